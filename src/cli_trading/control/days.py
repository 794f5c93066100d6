"""The orchestrator's trading day: which day it is (by the wall clock, or by the replayed market's
latest bar), its start equity and limits, saved on every change. The decisions are pure
(`trading/day.py`); this keeps the current day and writes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.db import repo
from cli_trading.halt.state import Limits
from cli_trading.trading import day as tday

Sessions = Callable[[], Any]  # an async session factory (`Agent.session`)


class TradingDays:
    def __init__(
        self,
        *,
        sessions: Sessions,
        clock: Callable[[], datetime],
        equity: Callable[[], Decimal],
        defaults: Limits,
        day: tday.TradingDay | None = None,
    ) -> None:
        self.sessions, self.clock, self.equity, self.defaults = sessions, clock, equity, defaults
        self.day = day
        self.market_now: datetime | None = None  # the latest replayed bar's time

    @staticmethod
    def from_row(row: Any) -> tday.TradingDay | None:
        """The day saved by `save` (None when no day was saved for today)."""
        if row is None:
            return None
        return tday.TradingDay(row.day, row.start_equity, Limits(row.target_pct, row.loss_limit_pct))

    def now(self) -> datetime:
        """The trading day's clock: on replayed history the market's (the latest bar's time, as
        in backtests: a day is a market day at any replay speed), else the wall clock."""
        return self.market_now or self.clock()

    def current(self) -> tday.TradingDay:
        if self.day is None:
            raise RuntimeError("orchestrator: the trading day read before start")
        return self.day

    def percent(self) -> Decimal:
        """Today's PnL in percent of the day's start equity."""
        return self.current().percent(self.equity())

    async def save(self) -> None:
        d = self.current()
        async with self.sessions() as s, s.begin():
            await repo.save_day(
                s,
                row={
                    "day": d.date,
                    "start_equity": d.start_equity,
                    "target_pct": d.limits.target_pct,
                    "loss_limit_pct": d.limits.loss_limit_pct,
                    "last_equity": self.equity(),
                    "updated_at": self.clock(),
                },
            )

    async def follow_market(self, now: datetime | None) -> None:
        """A replayed bar's time: the market's clock from now on."""
        first, self.market_now = self.market_now is None, now
        if first and now is not None and self.day is not None:
            # the day opened at start (by the wall clock, before any bar) is the replay's first
            # market day: same start equity, same limits, same halts
            self.day = tday.TradingDay(tday.day_of(now), self.day.start_equity, self.day.limits)
            await self.save()

    async def roll(self) -> tday.TradingDay | None:
        """The new day (saved) when the date changed or none was open; None while today lasts."""
        new = tday.rollover(self.day, now=self.now(), equity=self.equity(), defaults=self.defaults)
        if new is not None:
            self.day = new
            await self.save()
        return new

    async def set_limits(self, *, target_pct: Decimal | None, loss_limit_pct: Decimal | None) -> tday.TradingDay:
        """Today's limits (until the next day, which opens with the defaults)."""
        self.day = tday.with_limits(self.current(), target_pct=target_pct, loss_limit_pct=loss_limit_pct)
        await self.save()
        return self.day

    async def reset(self) -> Decimal:
        """Today's start equity set to the equity now; returns the previous one."""
        before = self.current().start_equity
        self.day = tday.reset(self.current(), equity=self.equity())
        await self.save()
        return before
