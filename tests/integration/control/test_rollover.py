"""The trading day rolls over at UTC midnight on the running orchestrator (injected clock): PnL
halts clear and say so; operator halts stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.config import load_settings

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def notifications(r: aioredis.Redis) -> list[dict]:
    return [orjson.loads(f[b"data"]) for _, f in await r.xrange("notify.events")]


@pytest.mark.parametrize(
    ("reason", "clears"),
    [("daily_loss_limit", True), ("daily_target_reached", True), ("manual", False), ("emergency_stop", False)],
)
async def test_rollover(tmp_path: Path, reason: str, clears: bool, redis_url: str) -> None:
    r = aioredis.from_url(redis_url)
    clock = Clock()
    orc = Orchestrator(load_settings(data_dir=tmp_path, redis_url=redis_url, admin_token="x" * 20), clock=clock)
    await orc.start()
    try:
        assert orc.parts.days.day and orc.parts.days.day.date == "2026-03-01"
        orc.parts.halts.halt(reason=reason, mode="halt", actor="system", source=None, note=None)
        clock.now += timedelta(seconds=20)  # still the same UTC day
        await orc.roll_day()
        assert orc.parts.halts.state.halted
        clock.now += timedelta(seconds=20)  # 00:00:10 the next day
        await orc.roll_day()
        assert orc.parts.days.current().date == "2026-03-02"
        assert orc.parts.halts.state.halted is not clears
        live = await r.hgetall("cli-trading:halt")
        assert live[b"halted"] == (b"0" if clears else b"1")
        kinds = [n["type"] for n in await notifications(r)]
        assert ("unhalt.rollover_clear" in kinds) is clears
        if clears:
            note = next(n for n in await notifications(r) if n["type"] == "unhalt.rollover_clear")
            assert reason in note["message"] and "2026-03-02" in note["message"]
    finally:
        await orc.stop()
        await r.flushdb()
        await r.aclose()
