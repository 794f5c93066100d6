"""Incremental indicators give what the windowed functions give for the same values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_trading.trading.indicators import ATR, EMA, RSI, Rolling, atr, bollinger, ema, rsi, sma

prices = st.lists(st.floats(min_value=1.0, max_value=1e5), min_size=1, max_size=120)
periods = st.integers(min_value=1, max_value=30)


@given(prices, periods)
def test_ema(xs: list[float], n: int) -> None:
    e = EMA(n)
    for i, x in enumerate(xs, start=1):
        got, want = e.update(x), ema(xs[:i], n)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, rel=1e-9)


@given(prices, periods, st.floats(min_value=0.5, max_value=3))
def test_rolling_mean_and_bands(xs: list[float], n: int, k: float) -> None:
    r = Rolling(n)
    for i, x in enumerate(xs, start=1):
        r.update(x)
        want = bollinger(xs[:i], n, k)
        assert r.ready == (want is not None)
        if want is not None:
            assert r.mean == pytest.approx(sma(xs[:i], n), rel=1e-9)
            assert r.moments() == (r.mean, r.var)  # exactly: the strategies read either
            # running sums carry float error on the scale of the largest price they saw (at most 2n
            # bars back, until the next exact recompute), and a square root amplifies it when the
            # window is flat: 1e-7 of that price, a cent at 100,000, is the bound
            scale = max(xs[max(0, i - 2 * n) : i])
            assert r.bands(k).upper == pytest.approx(want.upper, rel=1e-7, abs=1e-7 * scale)


@given(prices, st.integers(min_value=2, max_value=30))
def test_rsi(xs: list[float], n: int) -> None:
    r = RSI(n)
    for i, x in enumerate(xs, start=1):
        r.update(x)
        want = rsi(xs[:i], n)
        assert (r.value is None) == (want is None)
        if want is not None:
            assert r.value == pytest.approx(want, abs=1e-6)


@given(prices, periods)
def test_atr(xs: list[float], n: int) -> None:
    highs, lows = [x * 1.01 for x in xs], [x * 0.99 for x in xs]
    a = ATR(n)
    for i in range(len(xs)):
        got, want = a.update(highs[i], lows[i], xs[i]), atr(highs[: i + 1], lows[: i + 1], xs[: i + 1], n)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, rel=1e-9)


def test_rolling_stays_exact_over_a_long_series() -> None:
    r = Rolling(20)
    xs = [30_000 + (i % 7) * 0.01 for i in range(200_000)]
    for x in xs:
        r.update(x)
    assert r.mean == pytest.approx(sma(xs, 20), abs=1e-9)
    assert r.std == pytest.approx(bollinger(xs, 20, 1.0).upper - sma(xs, 20), abs=1e-7)  # type: ignore[union-attr]
