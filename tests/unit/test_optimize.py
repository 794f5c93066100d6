"""Backtest and grid search for the parameter optimizer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.market.bars import load_bars
from cli_trading.trading.optimize import (
    WINDOW,
    BacktestResult,
    backtest,
    candidates,
    default_grid,
    grid_search,
    score,
)
from cli_trading.trading.strategies import PriceBar, Signal, StrategyParams, TrendFollowing, build_strategy


@dataclass(frozen=True)
class PxBar:
    close: float
    high: float
    low: float


def px(*closes: float) -> list[PxBar]:
    return [PxBar(c, c, c) for c in closes]


@dataclass
class Scripted:
    """A test strategy: `rule(last close)` gives the side, at `confidence`; records its windows."""

    rule: Callable[[float], str | None]
    confidence: float = 0.9
    lookback: int = 1
    name: str = "scripted"
    params: StrategyParams = field(default_factory=StrategyParams)
    windows: list[list[float]] = field(default_factory=list)

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        self.windows.append([float(b.close) for b in bars])
        side = self.rule(float(bars[-1].close))
        return Signal(side, self.confidence if side else 0.0, self.name, "")  # type: ignore[arg-type]


def on(prices: dict[float, str]) -> Callable[[float], str | None]:
    return lambda close: prices.get(close)


def test_hold_only_strategy_does_nothing() -> None:
    result = backtest(Scripted(lambda _: None), px(100, 120, 80, 100), fee_bps=10)
    assert result == BacktestResult(0.0, 0, 0.0, 0.0)


def test_no_bars_is_a_zero_result() -> None:
    assert backtest(TrendFollowing(), []) == BacktestResult(0.0, 0, 0.0, 0.0)


def test_round_trip_return_after_fees() -> None:
    strat = Scripted(on({100: "buy", 120: "sell"}))
    free = backtest(strat, px(100, 110, 120, 130), fee_bps=0)
    assert free.return_pct == pytest.approx(20.0)
    assert (free.trades, free.win_rate, free.max_drawdown_pct) == (1, 1.0, 0.0)
    paid = backtest(strat, px(100, 110, 120, 130), fee_bps=10)
    assert paid.return_pct == pytest.approx((120 * 0.999 / (100 * 1.001) - 1) * 100)


def test_drawdown_and_losing_trade() -> None:
    result = backtest(Scripted(on({100: "buy", 90: "sell"})), px(100, 80, 90, 95), fee_bps=0)
    assert result.return_pct == pytest.approx(-10.0)
    assert result.max_drawdown_pct == pytest.approx(20.0)
    assert (result.trades, result.win_rate) == (1, 0.0)


def test_buy_while_long_and_sell_while_flat_are_ignored() -> None:
    strat = Scripted(on({100: "sell", 101: "buy", 102: "buy", 103: "sell", 104: "sell"}))
    result = backtest(strat, px(100, 101, 102, 103, 104), fee_bps=0)
    assert result.trades == 1
    assert result.return_pct == pytest.approx((103 / 101 - 1) * 100)


def test_open_position_is_closed_at_the_last_bar() -> None:
    result = backtest(Scripted(on({100: "buy"})), px(100, 105, 110), fee_bps=0)
    assert (result.trades, result.win_rate) == (1, 1.0)
    assert result.return_pct == pytest.approx(10.0)


def test_signals_below_min_confidence_are_not_traded() -> None:
    strat = Scripted(on({100: "buy", 120: "sell"}), confidence=0.5)
    assert backtest(strat, px(100, 120), min_confidence=0.55).trades == 0
    assert backtest(strat, px(100, 120), min_confidence=0.5).trades == 1


def test_backtest_calls_decide_on_rolling_windows_without_lookahead() -> None:
    closes = [float(100 + i) for i in range(250)]
    strat = Scripted(lambda _: None, lookback=30)
    backtest(strat, px(*closes))
    assert len(strat.windows) == 250 - 29  # from the first bar with enough history
    for i, window in enumerate(strat.windows, start=29):
        assert window[-1] == closes[i]  # sees the bar just closed, never a later one
        assert len(window) == min(i + 1, WINDOW)


def test_backtest_window_is_at_least_the_lookback() -> None:
    strat = Scripted(lambda _: None, lookback=150)
    backtest(strat, px(*range(1, 200)), window=100)
    assert {len(w) for w in strat.windows} == {150}


def test_backtest_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="fee_bps"):
        backtest(TrendFollowing(), px(1, 2), fee_bps=-1)
    with pytest.raises(ValueError, match="window"):
        backtest(TrendFollowing(), px(1, 2), window=0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-0.04, max_value=0.04), min_size=1, max_size=200))
def test_backtest_results_are_sane(steps: list[float]) -> None:
    closes = [100.0]
    for s in steps:
        closes.append(closes[-1] * (1 + s))
    for name in ("trend", "mean_reversion"):
        r = backtest(build_strategy(name), px(*closes), fee_bps=10, min_confidence=0.5)
        assert r.trades >= 0 and 0.0 <= r.win_rate <= 1.0
        assert 0.0 <= r.max_drawdown_pct <= 100.0 and r.return_pct > -100.0


# -- grid search ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc() -> list[Any]:
    return load_bars("BTC-USD")[-500:]


def test_grid_search_is_sorted_by_score_and_skips_invalid_combinations(btc: list[Any]) -> None:
    grid = {"fast": [5, 12, 30], "slow": [20, 26]}  # fast=30 is never shorter than slow
    proposals = grid_search("trend", {"min_spread_pct": 0.1}, grid, btc, fee_bps=10)
    assert len(proposals) == 4
    assert [p.score for p in proposals] == sorted((p.score for p in proposals), reverse=True)
    for p in proposals:
        assert p.params["fast"] < p.params["slow"] and p.params["min_spread_pct"] == 0.1
        assert set(p.params) == {"fast", "slow", "min_spread_pct", "full_confidence_spread_pct"}
        assert p.score == pytest.approx(score(p.result))
        assert p.score == pytest.approx(p.result.return_pct - 0.5 * p.result.max_drawdown_pct)
        assert vars(p.result) == p.result.as_dict()  # the optimizer agent publishes vars(result)


def test_grid_search_matches_a_direct_backtest(btc: list[Any]) -> None:
    (best, *_) = grid_search("trend", {}, {"fast": [8]}, btc)
    assert best.result == backtest(TrendFollowing(TrendFollowing.Params(fast=8)), btc)


def test_score_penalises_drawdown() -> None:
    calm, wild = BacktestResult(5.0, 3, 2.0, 0.6), BacktestResult(6.0, 3, 10.0, 0.6)
    assert score(calm) > score(wild)
    assert score(wild, drawdown_weight=0) > score(calm, drawdown_weight=0)


@pytest.mark.parametrize(
    ("name", "base", "grid", "match"),
    [
        ("trend", {}, {"fsat": [5]}, "no parameter fsat"),
        ("trend", {"slwo": 3}, {}, "no parameter slwo"),
        ("trend", {}, {"fast": []}, "no values for fast"),
        ("momentum", {}, {}, "unknown strategy"),
    ],
)
def test_grid_search_rejects_bad_grids(
    btc: list[Any], name: str, base: dict[str, Any], grid: dict[str, list[Any]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        grid_search(name, base, grid, btc)


def test_candidates_are_distinct() -> None:
    assert len(candidates("trend", {"fast": 5}, {"fast": [5, 5], "slow": [20, 20, 30]})) == 2


@pytest.mark.parametrize("name", ["trend", "mean_reversion"])
def test_default_grids_are_valid_and_fresh(name: str) -> None:
    grid = default_grid(name)
    assert len(candidates(name, {}, grid)) >= 20
    grid[next(iter(grid))].append("junk")
    assert "junk" not in default_grid(name)[next(iter(grid))]


def test_default_grid_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="no default grid"):
        default_grid("momentum")


TWENTY = {
    "trend": {"fast": [5, 8, 10, 12, 15], "slow": [20, 26, 30, 40]},
    "mean_reversion": {"period": [14, 20, 30, 40, 50], "width": [1.5, 2.0, 2.5, 3.0]},
}


@pytest.mark.parametrize("name", list(TWENTY))
def test_500_bars_times_20_parameter_sets_is_fast(btc: list[Any], name: str) -> None:
    assert len(btc) == 500
    start = time.process_time()  # CPU time: robust to a busy test machine
    proposals = grid_search(name, {}, TWENTY[name], btc)
    elapsed = time.process_time() - start
    assert len(proposals) == 20
    assert elapsed < 1.0, f"{elapsed:.2f}s for 500 bars x 20 parameter sets"
