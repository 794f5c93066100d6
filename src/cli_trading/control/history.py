"""What the operator reads back: the halt transitions and the audit trail, as the API shows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli_trading.db import repo


async def halt_events(sessions: Callable[[], Any], *, limit: int) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = await repo.halt_events(s, limit=limit)
    return [
        {
            "id": e.id,
            "ts": e.ts.isoformat(),
            "action": e.action,
            "reason": e.reason,
            "mode": e.mode,
            "actor": e.actor,
            "source": e.source,
            "note": e.note,
            "detail": e.detail,
        }
        for e in rows
    ]


async def audit_events(sessions: Callable[[], Any], *, limit: int, action: str | None) -> list[dict[str, Any]]:
    """The newest audit events first (`action`: those whose action starts with it)."""
    async with sessions() as s:
        rows = await repo.audit_tail(s, limit=limit, action_prefix=action)
    return [
        {
            "id": e.id,
            "ts": e.ts.isoformat(),
            "agent": e.agent,
            "action": e.action,
            "actor": e.actor,
            "source": e.source,
            "target": e.target,
            "result": e.result,
            "requestId": e.request_id,
            "detail": e.detail,
        }
        for e in rows
    ]
