"""The orchestrator's trading day (control/days.py): rollover by the wall clock or the replayed
market's, limits and reset for today only, every change saved. No service: a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli_trading.control.days import TradingDays
from cli_trading.db import engine as dbengine
from cli_trading.db import repo
from cli_trading.db.models import Base
from cli_trading.halt.state import Limits

DEFAULTS = Limits(Decimal(5), Decimal(3))


class World:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.now = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
        self.equity = Decimal(10_000)
        self.days = TradingDays(
            sessions=sessions, clock=lambda: self.now, equity=lambda: self.equity, defaults=DEFAULTS
        )

    async def saved(self, day: str) -> tuple[Decimal, Decimal, Decimal, Decimal | None] | None:
        async with self.sessions() as s:
            row = await repo.get_day(s, day=day)
        if row is None:
            return None
        return row.start_equity, row.target_pct, row.loss_limit_pct, row.last_equity


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    engine = dbengine.make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unit.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield World(dbengine.sessionmaker(engine))
    await engine.dispose()


async def test_the_first_day_opens_with_the_equity_and_defaults(world: World) -> None:
    with pytest.raises(RuntimeError, match="before start"):
        world.days.percent()
    new = await world.days.roll()
    assert new is not None and (new.date, new.start_equity, new.limits) == ("2026-03-01", Decimal(10_000), DEFAULTS)
    assert await world.saved("2026-03-01") == (Decimal(10_000), Decimal(5), Decimal(3), Decimal(10_000))
    world.equity = Decimal(10_150)
    assert world.days.percent() == Decimal("1.5")
    assert await world.days.roll() is None  # still today


async def test_midnight_opens_a_new_day_with_the_defaults_again(world: World) -> None:
    await world.days.roll()
    await world.days.set_limits(target_pct=Decimal(9), loss_limit_pct=None)
    assert world.days.current().limits == Limits(Decimal(9), Decimal(3))
    world.now += timedelta(minutes=2)
    world.equity = Decimal(9_900)
    new = await world.days.roll()
    assert new is not None and (new.date, new.start_equity, new.limits) == ("2026-03-02", Decimal(9_900), DEFAULTS)
    saved = await world.saved("2026-03-01")
    assert saved is not None and saved[1] == Decimal(9)  # yesterday's row keeps its limits


async def test_reset_starts_today_from_the_equity_now(world: World) -> None:
    await world.days.roll()
    world.equity = Decimal(9_500)
    assert await world.days.reset() == Decimal(10_000)
    assert world.days.current().start_equity == Decimal(9_500) and world.days.percent() == 0
    saved = await world.saved("2026-03-01")
    assert saved is not None and saved[0] == Decimal(9_500)


async def test_a_replay_follows_the_market_clock(world: World) -> None:
    await world.days.roll()  # opened at start, by the wall clock
    market = datetime(2024, 6, 3, 14, tzinfo=UTC)
    await world.days.follow_market(market)
    assert world.days.current().date == "2024-06-03"  # the same day, renamed: same equity and limits
    assert world.days.current().start_equity == Decimal(10_000)
    assert await world.saved("2024-06-03") is not None
    assert await world.days.roll() is None
    await world.days.follow_market(market + timedelta(hours=10))  # the market's midnight
    new = await world.days.roll()
    assert new is not None and new.date == "2024-06-04"
    assert world.days.now() == market + timedelta(hours=10)  # not the wall clock


async def test_a_saved_day_is_read_back(world: World) -> None:
    await world.days.roll()
    await world.days.set_limits(target_pct=None, loss_limit_pct=Decimal("1.5"))
    async with world.sessions() as s:
        day = TradingDays.from_row(await repo.get_day(s, day="2026-03-01"))
    assert day == world.days.current()
    assert TradingDays.from_row(None) is None
