"""An agent's `Services` (agents/wiring.py) for a wiring function called without the lifecycle:
the unit tests' parts are built without a server (nothing connects until a part is used)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cli_trading.agents.wiring import Services
from cli_trading.config import Settings


async def _nothing(*_a: Any, **_kw: Any) -> Any:
    return None


def _no_database() -> Any:
    raise AssertionError("no part reads the database while being built")


def offline(settings: Settings, *, name: str, redis: Any, now: datetime) -> Services:
    return Services(
        settings=settings,
        name=name,
        sessions=_no_database,
        redis=redis,
        clock=lambda: now,
        audit=lambda *a, **kw: None,
        notify=_nothing,
        publish=_nothing,
        log=None,
    )
