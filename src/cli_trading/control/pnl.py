"""The PnL view of `GET /pnl/status`: the ledger's snapshot against the trading day, with the halt.
Pure: it takes the parts it reads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.contracts import iso
from cli_trading.halt.state import HaltState, Limits
from cli_trading.trading import day as tday
from cli_trading.trading.ledger import Ledger


def pnl_view(
    ledger: Ledger, *, day: tday.TradingDay | None, defaults: Limits, halt: HaltState, now: datetime
) -> dict[str, Any]:
    snap = ledger.snapshot()
    day = day or tday.TradingDay(tday.day_of(now), snap.equity, defaults)  # before the first bar
    return {
        "date": day.date,
        "startEquity": day.start_equity,
        "equity": snap.equity,
        "cash": snap.cash,
        "realized": snap.realized,
        "unrealized": snap.unrealized,
        "fees": snap.fees,
        "exposure": snap.exposure,
        "percent": day.percent(snap.equity).quantize(Decimal("0.0001")),
        "dailyTargetPct": day.limits.target_pct,
        "dailyLossLimitPct": day.limits.loss_limit_pct,
        **halt.to_api(),
        "positions": ledger.holdings(),
        "asOf": iso(now),
    }
