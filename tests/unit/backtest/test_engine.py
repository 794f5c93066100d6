"""The backtest engine: the agents' pure functions in their order, per market day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from cli_trading.backtest import run
from cli_trading.market.bars import Bar, load_bars
from cli_trading.trading.ledger import FillRecord, replay
from cli_trading.trading.risk import RiskRules
from cli_trading.trading.strategies import Candle, Signal, Strategy, StrategyParams
from cli_trading.trading.strategy_config import StrategyFile

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def bars(closes: list[float], symbol: str = "BTC-USD", step: timedelta = timedelta(hours=1)) -> list[Bar]:
    out = []
    for i, c in enumerate(closes):
        d = Decimal(str(c))
        out.append(Bar(symbol, T0 + i * step, d, d, d, d, Decimal(1)))
    return out


class Always(Strategy[StrategyParams]):
    """Buys on every bar with full confidence (a test strategy)."""

    name = "always"

    def on_bar(self, candle: Candle) -> Signal:
        return Signal("buy", 1.0, self.name, "always")


def only(cls: type[Strategy[Any]]) -> StrategyFile:
    return StrategyFile.model_validate({"strategies": [{"name": "t", "class": f"{cls.__module__}:{cls.__qualname__}"}]})


def test_shipped_history_trades_and_the_ledger_agrees_with_the_fills() -> None:
    res = run({"BTC-USD": load_bars("BTC-USD")})
    m = res.metrics
    assert m.bars == 5000 and m.fills == len(res.fills) > 100 and m.trades > 0
    ledger = replay(
        Decimal(10000), [FillRecord(f.order_id, f.symbol, f.side, f.qty, f.price, f.fee) for f in res.fills], {}
    )
    assert ledger.cash == res.final_cash
    assert ledger.fees == sum((f.fee for f in res.fills), Decimal(0))
    assert abs(m.fees_paid - float(ledger.fees)) < 1e-6
    assert all(f.price > 0 and f.qty > 0 and f.fee > 0 for f in res.fills)


def test_fills_follow_sizing_slippage_and_fees() -> None:
    res = run({"BTC-USD": bars([100.0] * 3)}, only(Always), RiskRules(min_confidence=0.5))
    first = res.fills[0]
    # 2% of 10000 equity at confidence 1 → 200 / 100 = 2 units; 5 bps slippage; 10 bps fee
    assert first.qty == Decimal("2") and first.price == Decimal("100.05")
    assert first.fee == (Decimal("2") * Decimal("100.05") * Decimal("0.001")).quantize(Decimal("0.00000001"))


def test_position_limit_is_enforced_by_the_risk_rules() -> None:
    res = run({"BTC-USD": bars([100.0] * 50)}, only(Always), RiskRules(max_position_notional=Decimal(1000)))
    held = sum(f.qty for f in res.fills)
    assert held * 100 <= 1000
    assert res.counters.rejected.get("max_position_notional", 0) > 0


def test_daily_loss_halt_holds_for_the_market_day_and_clears_on_the_next() -> None:
    # buys at 100 on day 1 at 00:00..03:00, then a crash at 04:00 trips the 3% loss limit
    closes = [100.0] * 4 + [10.0] * 20 + [10.0] * 30  # day 2 starts at bar 24
    res = run(
        {"BTC-USD": bars(closes)},
        only(Always),
        RiskRules(
            min_confidence=0.5,
            max_order_notional=Decimal(100000),
            max_position_notional=Decimal(100000),
            max_total_exposure=Decimal(100000),
        ),
        risk_fraction="0.5",
    )
    actions = [(h.action, h.reason, h.day) for h in res.halts]
    assert actions[0] == ("halt", "daily_loss_limit", "2024-01-01")
    assert actions[1] == ("unhalt", "rollover_clear:daily_loss_limit", "2024-01-02")
    day1 = [f for f in res.fills if f.ts.date().isoformat() == "2024-01-01"]
    assert day1 and all(f.ts.hour < 4 for f in day1)  # nothing after the halt that day
    assert any(f.ts.date().isoformat() == "2024-01-02" for f in res.fills)  # trading again


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="fees"):
        run({"BTC-USD": bars([1.0])}, fees=1)


def test_symbols_are_merged_by_close_time_over_their_common_span() -> None:
    from cli_trading.backtest.data import _common_span, timeline

    hourly = bars([100.0] * 72, "BTC-USD")  # 3 days of hours
    daily = bars([10.0] * 5, "ETH-USD", step=timedelta(days=1))  # 5 days
    intervals = {"BTC-USD": timedelta(hours=1), "ETH-USD": timedelta(days=1)}
    series = _common_span({"BTC-USD": hourly, "ETH-USD": daily}, intervals)
    steps = list(timeline(series, intervals))
    closes = [max(b.ts for b in s) for s in steps]
    assert closes == sorted(closes)
    # a daily bar comes out with the hourly bar that closes at the same midnight, after it
    joint = [s for s in steps if len(s) == 2]
    assert [[b.symbol for b in s] for s in joint] == [["BTC-USD", "ETH-USD"]] * len(joint) and joint
    # each bar with its own symbol's length: the hour that closes at midnight (23:00) meets the day
    # (once every symbol took the last one's length, and the hour opening at midnight met it)
    assert all(s[0].ts + timedelta(hours=1) == s[1].ts + timedelta(days=1) for s in joint)
    # only the span both cover: ETH's first day closes at the end of day 1, its third at day 3's end
    first_close = min(b.ts + intervals[b.symbol] for s in steps for b in s)
    assert first_close == T0 + timedelta(days=1)
    assert all(b.ts + intervals[b.symbol] <= T0 + timedelta(days=3) for s in steps for b in s)


def test_the_chart_is_bounded_and_ends_at_the_last_bar() -> None:
    bars = load_bars("BTC-USD")[:40]
    for n in range(1, len(bars) + 1):  # every length, including those where the buffer halves at the last bar
        res = run({"BTC-USD": bars[:n]}, keep_fills=False, chart_points=4)
        assert res.chart[-1].ts == bars[n - 1].ts
        assert res.chart[0].ts == bars[0].ts
        assert len(res.chart) <= 4 + 1
        assert [p.ts for p in res.chart] == sorted({p.ts for p in res.chart})  # in order, no repeats


class Recording(Strategy[StrategyParams]):
    """Holds, and keeps every candle it saw (a test strategy)."""

    name = "recording"
    seen: list[Candle] = []  # one run at a time in this test

    def on_bar(self, candle: Candle) -> Signal:
        Recording.seen.append(candle)
        return Signal(None, 0.0, self.name, "")


def test_strategies_see_the_candles_the_live_analyst_gives_them() -> None:
    """The backtest hands a strategy what the market analyst's Candle.of(bar) does: every price
    and the volume, as floats."""
    history = load_bars("BTC-USD")[:50]
    Recording.seen = []
    run({"BTC-USD": history}, only(Recording))
    assert Recording.seen == [Candle.of(b) for b in history]
    assert Recording.seen[0].volume == float(history[0].volume) > 0
    # a Bar's floats are those Candle.of computes from the Decimal prices of anything else
    fields = ("symbol", "ts", "open", "high", "low", "close", "volume")
    plain = [SimpleNamespace(**{k: getattr(b, k) for k in fields}) for b in history]
    assert [Candle.of(p) for p in plain] == Recording.seen
