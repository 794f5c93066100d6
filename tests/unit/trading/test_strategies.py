"""Strategies, the registry, combining signals and the strategies YAML file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cli_trading.config import DEFAULTS_DIR
from cli_trading.market.bars import Bar
from cli_trading.trading.strategies import (
    STRATEGIES,
    MeanReversion,
    MeanReversionParams,
    Signal,
    TrendFollowing,
    TrendParams,
    build_strategy,
    combine,
)
from cli_trading.trading.strategy_config import load_strategies, load_strategy_config

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bars(closes: list[float], spread: float = 0.005) -> list[Bar]:
    """Bars with the given closes; high and low `spread` (a fraction) around the close."""
    out = []
    for i, c in enumerate(closes):
        close = Decimal(str(round(c, 8)))
        high, low = close * Decimal(1 + spread), close * Decimal(1 - spread)
        out.append(Bar("BTC-USD", T0 + timedelta(hours=i), close, high, low, close, Decimal(1)))
    return out


def wave(n: int, level: float = 100.0, amp: float = 1.0) -> list[float]:
    return [level + amp * math.sin(i / 3) for i in range(n)]


ALL = [TrendFollowing(), MeanReversion()]
levels = st.floats(min_value=0.01, max_value=1e6)
walks = st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=0, max_size=150)


def walk(start: float, steps: list[float]) -> list[float]:
    out = [start]
    for s in steps:
        out.append(out[-1] * (1 + s))
    return out


# -- Signal ---------------------------------------------------------------------------------


def test_signal_validates_side_and_confidence() -> None:
    assert Signal("buy", 1.0, "x", "r").confidence == 1.0
    assert Signal(None, 0.0, "x").is_hold
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="confidence"):
            Signal("sell", bad, "x")
    with pytest.raises(ValueError, match="side"):
        Signal("short", 0.5, "x")  # type: ignore[arg-type]


# -- behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_too_few_bars_hold(strategy: TrendFollowing | MeanReversion) -> None:
    for n in (0, 1, strategy.lookback - 1):
        sig = strategy.decide(bars([100.0 + i for i in range(n)]))
        assert sig.is_hold and sig.confidence == 0.0 and "not enough bars" in sig.reason


@given(levels, st.integers(min_value=0, max_value=120))
def test_flat_series_holds(level: float, n: int) -> None:
    for strategy in ALL:
        sig = strategy.decide(bars([level] * n))
        assert sig.side is None, (strategy.name, sig)


@given(levels, walks)
def test_confidence_is_always_within_0_and_1(start: float, steps: list[float]) -> None:
    window = bars(walk(start, steps))
    for strategy in ALL:
        sig = strategy.decide(window)
        assert 0.0 <= sig.confidence <= 1.0
        assert sig.strategy == strategy.name
        assert (sig.side is None) == (sig.confidence == 0.0)


@given(st.floats(min_value=0.002, max_value=0.05), st.integers(min_value=30, max_value=120))
def test_rising_series_makes_trend_buy(step: float, n: int) -> None:
    sig = TrendFollowing().decide(bars([100 * (1 + step) ** i for i in range(n)]))
    assert sig.side == "buy" and sig.confidence > 0.5


def test_falling_series_makes_trend_sell_and_stronger_trends_are_surer() -> None:
    slow = TrendFollowing().decide(bars([100 * 0.999**i for i in range(60)]))
    fast = TrendFollowing().decide(bars([100 * 0.99**i for i in range(60)]))
    assert slow.side == fast.side == "sell"
    assert fast.confidence > slow.confidence
    assert fast.confidence == 1.0


def test_trend_holds_within_the_minimum_spread() -> None:
    strat = TrendFollowing(TrendParams(min_spread_pct=5.0, full_confidence_spread_pct=10.0))
    assert strat.decide(bars([100 * 1.001**i for i in range(60)])).is_hold


@given(st.floats(min_value=1.0, max_value=1e5), st.floats(min_value=0.05, max_value=2.0))
def test_spike_above_the_upper_band_makes_mean_reversion_sell(level: float, jump: float) -> None:
    closes = [*wave(40, level, level * 0.002), level * (1 + jump)]
    sig = MeanReversion().decide(bars(closes))
    assert sig.side == "sell" and 0.5 <= sig.confidence <= 1.0
    assert "upper band" in sig.reason


def test_plunge_below_the_lower_band_makes_mean_reversion_buy() -> None:
    sig = MeanReversion().decide(bars([*wave(40), 90.0]))
    assert sig.side == "buy" and sig.confidence > 0.5


def test_mean_reversion_holds_inside_the_bands() -> None:
    assert MeanReversion().decide(bars(wave(60))).is_hold


def test_mean_reversion_needs_rsi_confirmation() -> None:
    # a long slide, then a bounce that closes above the upper band: RSI is not overbought yet
    closes = [100 - i for i in range(60)] + [41.0, 43.0, 46.0]
    strat = MeanReversion(MeanReversionParams(period=5, width=1.0))
    sig = strat.decide(bars(closes))
    assert sig.is_hold and "not extreme" in sig.reason


def test_decide_reads_decimal_bars_and_float_bars_alike_and_is_pure() -> None:
    @dataclass(frozen=True)
    class FloatBar:
        close: float
        high: float
        low: float

    closes = [*wave(40), 130.0]
    decimal_bars = tuple(bars(closes))
    float_bars = [FloatBar(float(b.close), float(b.high), float(b.low)) for b in decimal_bars]
    for strategy in ALL:
        first = strategy.decide(decimal_bars)
        assert strategy.decide(decimal_bars) == first == strategy.decide(float_bars)


# -- registry and parameters ----------------------------------------------------------------


def test_registry_and_build() -> None:
    assert {"trend": TrendFollowing, "mean_reversion": MeanReversion} == STRATEGIES
    strat = build_strategy("trend", {"fast": 5, "slow": 20})
    assert isinstance(strat, TrendFollowing) and strat.name == "trend"
    assert (strat.params.fast, strat.params.slow, strat.lookback) == (5, 20, 20)
    assert build_strategy("mean_reversion").params == MeanReversionParams()


def test_build_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'momentum'; known: trend, mean_reversion"):
        build_strategy("momentum", {})


def test_build_unknown_parameter_names_it() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'fsat'"):
        build_strategy("trend", {"fsat": 5})


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("trend", {"fast": 30, "slow": 20}, "fast .* must be shorter than slow"),
        ("trend", {"min_spread_pct": 2, "full_confidence_spread_pct": 1}, "full_confidence_spread_pct"),
        ("trend", {"fast": "quick"}, "fast"),
        ("mean_reversion", {"period": 1}, "period"),
        ("mean_reversion", {"rsi_low": 50, "rsi_high": 50}, "rsi_low"),
    ],
)
def test_invalid_parameters_are_value_errors(name: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_strategy(name, params)


def test_params_are_immutable() -> None:
    with pytest.raises(ValidationError):
        TrendFollowing().params.fast = 3  # type: ignore[misc]


# -- combine --------------------------------------------------------------------------------


def sig(side: str | None, confidence: float, name: str = "s") -> Signal:
    return Signal(side, confidence, name, "")  # type: ignore[arg-type]


def test_combine_picks_the_most_confident_signal() -> None:
    best = sig("buy", 0.9, "trend")
    assert combine([sig("buy", 0.6), best, sig(None, 0.0)]) is best
    assert combine([sig("sell", 0.5, "mr"), best]) is best


def test_combine_holds_when_opposing_signals_are_close() -> None:
    out = combine([sig("buy", 0.8, "trend"), sig("sell", 0.75, "mean_reversion")])
    assert out.is_hold and out.strategy == "combined" and "disagree" in out.reason
    assert combine([sig("buy", 0.8), sig("sell", 0.75)], tie_margin=0.01).side == "buy"


def test_combine_of_nothing_holds() -> None:
    assert combine([]).is_hold
    assert combine([sig(None, 0.0), sig(None, 0.0)]).is_hold


signals = st.builds(
    sig, st.sampled_from(["buy", "sell", None]), st.floats(min_value=0, max_value=1), st.sampled_from("abc")
)


@given(st.lists(signals, max_size=6))
def test_combine_returns_hold_or_the_most_confident_input(inputs: list[Signal]) -> None:
    out = combine(inputs)
    if out.side is not None:
        assert out in inputs
        assert out.confidence == max(s.confidence for s in inputs if s.side)
        # the rule as combine states it (best - rival >= margin): `rival <= best - margin` differs
        # by a float rounding (best 0.1, rival 5.8e-34: 0.1 - 5.8e-34 == 0.1)
        assert all(out.confidence - s.confidence >= 0.1 for s in inputs if s.side and s.side != out.side)


# -- strategies.yaml ------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategies.yaml"
    path.write_text(text)
    return path


def test_default_file_loads() -> None:
    cfg = load_strategy_config(DEFAULTS_DIR / "strategies.yaml")
    assert [e.name for e in cfg.strategies] == ["trend", "mean_reversion"]
    assert cfg.combine == "max_confidence" and cfg.tie_margin == 0.1
    strategies = load_strategies(DEFAULTS_DIR / "strategies.yaml")
    assert [type(s) for s in strategies] == [TrendFollowing, MeanReversion]
    assert strategies[0].params == TrendParams() and strategies[1].params == MeanReversionParams()


def test_file_params_and_symbols(tmp_path: Path) -> None:
    path = write(tmp_path, "strategies:\n  - {name: trend, symbols: [ETH-USD], params: {fast: 3, slow: 9}}\n")
    cfg = load_strategy_config(path)
    (entry,) = cfg.strategies
    assert entry.applies_to("ETH-USD") and not entry.applies_to("BTC-USD")
    assert load_strategies(path)[0].params.slow == 9  # type: ignore[attr-defined]
    assert cfg.combine_signals([sig("buy", 0.7), sig("sell", 0.65)]).is_hold


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("strategies: [{name: trend}]\ncombyne: max_confidence\n", "combyne"),
        ("strategies: [{name: trend, symbol: ['*']}]\n", "symbol"),
        ("strategies: [{name: trend, params: {fast: 5, slow: 20, fsat: 3}}]\n", "fsat"),
        ("strategies: [{name: momentum}]\n", "momentum"),
        ("strategies: [{name: trend, params: {fast: 50, slow: 20}}]\n", "shorter than slow"),
        ("strategies: [{name: trend}, {name: trend}]\n", "more than once: trend"),
        ("strategies: [{name: trend}]\ncombine: vote\n", "combine"),
        ("strategies: []\n", "strategies"),
        ("strategies: [{name: trend}\n", "strategies.yaml"),
    ],
)
def test_bad_file_is_an_error_naming_the_problem(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_strategies(write(tmp_path, text))
