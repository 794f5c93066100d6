"""The orchestrator's parts wired from the settings and what was found at start
(agents/orchestrator_wiring.py): no service needed (nothing connects until a part is used)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from cli_trading.agents.orchestrator_wiring import Found, wire_orchestrator
from cli_trading.config import Settings
from cli_trading.control.runs import Run
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord, replay
from tests.support import services

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
UNDIALLED = "redis://127.0.0.1:1/0"  # nothing connects while the parts are built


async def _nothing() -> Any:
    return None


def _wire(s: Settings, found: Found, redis: Any) -> Any:
    return wire_orchestrator(
        services.offline(s, name="orchestrator", redis=redis, now=NOW),
        found,
        loop=asyncio.get_running_loop(),
        db_up=_nothing,
        roll_day=_nothing,
        flatten=_nothing,
        pnl=dict,
        health=_nothing,
        process=dict,
    )


async def test_parts_share_what_was_found_and_take_the_settings() -> None:
    ledger = replay(Decimal(1000), [FillRecord("o1", "BTC-USD", "buy", Decimal(1), Decimal(100), Decimal(0))], {})
    halted = HaltState(halted=True, reason="manual", mode="reduce_only")
    open_run = Run("r1", "BTC-USD", NOW, manual=True, side="buy")
    found = Found(ledger, halted, None, None, [open_run], {})
    limits = {"daily_target_pct": Decimal(3), "daily_loss_limit_pct": Decimal(2)}
    s = Settings(redis_url=UNDIALLED, db_outage_halt_s=7.5, symbols="BTC-USD", **limits)
    redis = aioredis.Redis.from_url(UNDIALLED)
    parts = _wire(s, found, redis)
    try:
        assert parts.found is found and parts.ledger is ledger and parts.watchdogs.ledger is ledger
        assert parts.runs.get("r1") is open_run and parts.safety.runs is parts.runs is parts.watchdogs.runs
        assert parts.halts.state == halted and parts.watchdogs.halts is parts.halts
        assert parts.halts.recorder is parts.recorder and parts.halts.store is parts.halt_store
        assert parts.days.day is None and parts.days.equity() == ledger.snapshot().equity
        assert (parts.days.defaults.target_pct, parts.days.defaults.loss_limit_pct) == (Decimal(3), Decimal(2))
        assert parts.watchdogs.db_outage_halt_s == 7.5 and parts.params.symbols == ["BTC-USD"]
        assert parts.halts.gate.redis is redis and parts.safety.redis is redis is parts.watchdogs.redis
        assert parts.halts.agent == "orchestrator" and parts.days.clock() == NOW
        assert parts.overview.runs is parts.runs and parts.overview.halt_state() == halted
    finally:
        parts.halt_store.close()
        await redis.aclose()
