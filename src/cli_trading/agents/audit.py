"""An agent's audit buffer: events queued as decisions are made (a decision makes several) and
written in batches, one transaction per interval. A failed write keeps them (the latest
`KEEP_AFTER_FAILURE`) for the next try."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cli_trading.db import repo

KEEP_AFTER_FAILURE = 50_000


class AuditBuffer:
    def __init__(self, agent: str, *, clock: Callable[[], datetime], log: Any) -> None:
        self.agent, self.clock, self.log = agent, clock, log
        self.rows: list[dict[str, Any]] = []

    def add(self, action: str, **fields: Any) -> None:
        """Queue one event: who (`actor`, `source`), on what (`target`), with what `result`, for
        which `request_id`; any other field goes to its detail."""
        self.rows.append(
            {
                "ts": self.clock(),
                "agent": self.agent,
                "action": action,
                "actor": fields.pop("actor", None),
                "source": fields.pop("source", None),
                "target": fields.pop("target", None),
                "result": fields.pop("result", None),
                "request_id": fields.pop("request_id", None),
                "detail": fields or None,
            }
        )

    async def flush(self, sessions: Callable[[], Any]) -> None:
        """Write what is queued in one transaction; on failure it stays queued for the next try."""
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        try:
            async with sessions() as s, s.begin():
                await repo.add_audit(s, rows=rows)
        except Exception as exc:  # noqa: BLE001 - keep them for the next try
            self.rows[:0] = rows[-KEEP_AFTER_FAILURE:]
            self.log.warning("buffered write failed, will retry", error=str(exc)[:200])
