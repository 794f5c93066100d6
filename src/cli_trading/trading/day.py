"""The trading day: the UTC date, its start equity and limits. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from cli_trading.halt.state import Limits
from cli_trading.trading.ledger import pnl_percent


@dataclass(frozen=True, slots=True)
class TradingDay:
    date: str
    start_equity: Decimal
    limits: Limits

    def percent(self, equity: Decimal) -> Decimal:
        return pnl_percent(equity, self.start_equity)


def day_of(now: datetime) -> str:
    return now.date().isoformat()


def rollover(day: TradingDay | None, *, now: datetime, equity: Decimal, defaults: Limits) -> TradingDay | None:
    """A new day when the UTC date changed (or none was open); None when today is still today.
    Limits set for one day through the admin API do not carry over."""
    today = day_of(now)
    if day is not None and day.date == today:
        return None
    return TradingDay(today, equity, defaults)


def reset(day: TradingDay, *, equity: Decimal) -> TradingDay:
    return replace(day, start_equity=equity)


def with_limits(day: TradingDay, *, target_pct: Decimal | None, loss_limit_pct: Decimal | None) -> TradingDay:
    lim = day.limits
    return replace(day, limits=Limits(target_pct or lim.target_pct, loss_limit_pct or lim.loss_limit_pct))
