"""Indicators: known values, not-enough-data, and range properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_trading.trading.indicators import atr, bollinger, ema, rsi, sma, true_ranges

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
series = st.lists(prices, min_size=1, max_size=120)
periods = st.integers(min_value=1, max_value=40)

# Wilder's worked example as published by StockCharts (which rounds intermediate averages, hence
# the tolerance): closes and the RSI(14) after the 15th to 20th close.
WILDER_CLOSES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08,
    45.89, 46.03, 45.61, 46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64,
]  # fmt: skip
WILDER_RSI = [70.53, 66.32, 66.55, 69.41, 66.36, 57.97]


@pytest.mark.parametrize("fn", [sma, ema, rsi])
def test_not_enough_data_is_none(fn: object) -> None:
    assert fn([1.0, 2.0], 5) is None  # type: ignore[operator]
    assert fn([], 1 if fn is not rsi else 2) is None  # type: ignore[operator]


@pytest.mark.parametrize("fn", [sma, ema, rsi, bollinger])
def test_period_below_one_is_an_error(fn: object) -> None:
    with pytest.raises(ValueError, match="period"):
        fn([1.0, 2.0, 3.0], 0)  # type: ignore[operator]


def test_sma_known_values() -> None:
    assert sma([1.0, 2.0, 3.0, 4.0], 2) == 3.5
    assert sma([1.0, 2.0, 3.0, 4.0], 4) == 2.5
    assert sma([0.1, 0.1, 0.1], 3) == 0.1  # float rounding never leaves the window's range


def test_ema_known_values() -> None:
    assert ema([5.0] * 30, 10) == 5.0
    assert ema([1.0, 2.0, 3.0], 3) == 2.0  # seeded with the SMA
    assert ema([1.0, 2.0, 3.0, 4.0], 3) == pytest.approx(3.0)  # 2 + 0.5 * (4 - 2)
    assert ema([3.0, 7.0, 11.0], 1) == 11.0  # alpha 1: the last value


def test_ema_reacts_faster_than_sma() -> None:
    xs = [100.0] * 50 + [110.0] * 5
    assert ema(xs, 20) > sma(xs, 20)  # type: ignore[operator]


@pytest.mark.parametrize("k", range(len(WILDER_RSI)))
def test_rsi_matches_wilders_worked_example(k: int) -> None:
    assert rsi(WILDER_CLOSES[: 15 + k], 14) == pytest.approx(WILDER_RSI[k], abs=0.1)


def test_rsi_extremes_and_flat() -> None:
    assert rsi([float(x) for x in range(1, 40)], 14) == 100.0
    assert rsi([float(x) for x in range(40, 1, -1)], 14) == 0.0
    assert rsi([42.0] * 40, 14) == 50.0
    assert rsi([1.0, 2.0], 1) == 100.0


def test_bollinger_known_values() -> None:
    bands = bollinger([1.0, 2.0, 3.0, 4.0, 5.0], 5, 2.0)
    assert bands is not None
    assert bands.mid == 3.0
    assert bands.upper == pytest.approx(3 + 2 * math.sqrt(2))
    assert bands.lower == pytest.approx(3 - 2 * math.sqrt(2))
    assert bollinger([7.0] * 25, 20) == (7.0, 7.0, 7.0)
    assert bollinger([1.0] * 5, 20) is None
    with pytest.raises(ValueError, match="width"):
        bollinger([1.0] * 5, 5, -1)


def test_atr_known_values() -> None:
    closes = [10.0] * 20
    assert atr([11.0] * 20, [9.0] * 20, closes, 14) == pytest.approx(2.0)
    assert atr([11.0] * 14, [9.0] * 14, [10.0] * 14, 14) is None  # 14 bars: only 13 true ranges
    # a gap: the previous close (10) lies above this bar's high (8), so the true range is 10 - 7
    assert true_ranges([11.0, 8.0], [9.0, 7.0], [10.0, 7.5]) == [3.0]


def test_atr_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="length"):
        atr([1.0, 2.0], [1.0], [1.0, 2.0], 1)


@given(series, periods)
def test_sma_lies_within_the_window(xs: list[float], n: int) -> None:
    value = sma(xs, n)
    if len(xs) < n:
        assert value is None
    else:
        assert value is not None
        assert min(xs[-n:]) <= value <= max(xs[-n:])


@given(series, periods)
def test_ema_lies_within_the_series(xs: list[float], n: int) -> None:
    value = ema(xs, n)
    assert value is None if len(xs) < n else min(xs) <= value <= max(xs)  # type: ignore[operator]


@given(series, periods)
def test_rsi_is_within_0_and_100(xs: list[float], n: int) -> None:
    value = rsi(xs, n)
    assert value is None if len(xs) <= n else 0.0 <= value <= 100.0  # type: ignore[operator]


@given(series, periods, st.floats(min_value=0, max_value=5))
def test_bollinger_bands_are_ordered_around_the_mean(xs: list[float], n: int, k: float) -> None:
    bands = bollinger(xs, n, k)
    if len(xs) < n:
        assert bands is None
    else:
        assert bands is not None
        assert bands.lower <= bands.mid <= bands.upper
        assert bands.upper - bands.mid == pytest.approx(bands.mid - bands.lower)


@given(st.lists(st.tuples(prices, prices, prices), min_size=2, max_size=80), st.integers(1, 30))
def test_atr_is_between_zero_and_the_largest_true_range(rows: list[tuple[float, float, float]], n: int) -> None:
    highs = [max(r) for r in rows]
    lows = [min(r) for r in rows]
    closes = [sorted(r)[1] for r in rows]
    value = atr(highs, lows, closes, n)
    if len(rows) <= n:
        assert value is None
    else:
        assert value is not None
        assert 0.0 <= value <= max(true_ranges(highs, lows, closes)) * (1 + 1e-12)
