"""Backtest metrics against figures worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cli_trading.backtest.metrics import Drawdown, MetricsBook

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_drawdown_depth_and_longest_time_under_water() -> None:
    dd = Drawdown()
    for i, v in enumerate([100, 120, 90, 110, 125, 100, 130, 117]):
        dd.add(v, T0 + timedelta(days=i))
    assert dd.max_pct == pytest.approx(25.0)  # 120 → 90
    assert dd.longest == timedelta(days=3)  # 120 at day 1, recovered at day 4
    assert dd.finish(T0 + timedelta(days=7), 117) == timedelta(days=3)  # 130 → 117: 1 day so far


def test_daily_returns_sharpe_sortino_and_cagr() -> None:
    book = MetricsBook(100.0)
    equity = [100.0, 110.0, 99.0, 108.9]  # +10%, -10%, +10% over four days, one bar a day at noon
    for i, e in enumerate(equity):
        book.bar(T0 + timedelta(days=i, hours=12), e, 100.0, exposed=i % 2 == 0)
    m = book.result()
    rets = [0.0, 0.1, -0.1, 0.1]
    mean = sum(rets) / 4
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / 3)
    assert m.days == 4 and m.bars == 4
    assert m.sharpe == pytest.approx(mean / sd * math.sqrt(365))
    assert m.sortino == pytest.approx(mean / math.sqrt(0.01 / 4) * math.sqrt(365))
    assert m.total_return_pct == pytest.approx(8.9)
    assert m.cagr_pct == pytest.approx((1.089 ** (365.25 / 3) - 1) * 100)
    assert m.max_drawdown_pct == pytest.approx(10.0)
    assert m.exposure_time_pct == 50.0


def test_round_trips_win_rate_and_profit_factor() -> None:
    book = MetricsBook(1000.0)
    book.fill("X", "buy", 100.0, 1.0, flat_after=False)
    assert book.fill("X", "sell", 120.0, 1.0, flat_after=True) == pytest.approx(18.0)
    book.fill("X", "buy", 100.0, 1.0, flat_after=False)
    book.fill("X", "sell", 40.0, 1.0, flat_after=False)  # partly out: still open
    assert book.fill("X", "sell", 50.0, 1.0, flat_after=True) == pytest.approx(-13.0)
    book.bar(T0, 1000.0, 1000.0, exposed=False)
    m = book.result()
    assert m.trades == 2 and m.win_rate_pct == 50.0 and m.fills == 5
    assert m.profit_factor == pytest.approx(18 / 13)
    assert m.avg_trade == pytest.approx(2.5) and m.fees_paid == pytest.approx(5.0)
