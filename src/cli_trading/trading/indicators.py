"""Technical indicators over sequences of floats (closes; highs and lows for ATR).

Pure and synchronous. Each function returns the indicator's latest value, or None when the
series is too short. A period below 1 is a programming error (ValueError). Floats are fine here:
indicators only shape a decision, they never reach the ledger. Values that are averages of the
input are clamped into the input's range so float rounding can never push them outside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Bands(NamedTuple):
    """Bollinger bands: the moving average and the bands `k` standard deviations around it."""

    mid: float
    upper: float
    lower: float


def _check_period(n: int) -> None:
    if n < 1:
        raise ValueError(f"period must be at least 1, got {n}")


def _clamp(value: float, xs: Sequence[float]) -> float:
    return min(max(value, min(xs)), max(xs))


def sma(xs: Sequence[float], n: int) -> float | None:
    """Simple moving average of the last `n` values."""
    _check_period(n)
    if len(xs) < n:
        return None
    window = xs[len(xs) - n :]
    return _clamp(math.fsum(window) / n, window)


def ema(xs: Sequence[float], n: int) -> float | None:
    """Exponential moving average (alpha = 2 / (n + 1)), seeded with the SMA of the first `n`."""
    _check_period(n)
    if len(xs) < n:
        return None
    alpha = 2 / (n + 1)
    value = math.fsum(xs[:n]) / n
    for x in xs[n:]:
        value += alpha * (x - value)
    return _clamp(value, xs)


def rsi(xs: Sequence[float], n: int = 14) -> float | None:
    """Wilder's Relative Strength Index, 0..100 (50 on a flat series); needs n + 1 values.
    Average gain and loss: the mean over the first `n` changes, then Wilder's smoothing."""
    _check_period(n)
    if len(xs) <= n:
        return None
    gain = math.fsum(max(b - a, 0.0) for a, b in zip(xs[:n], xs[1 : n + 1], strict=True)) / n
    loss = math.fsum(max(a - b, 0.0) for a, b in zip(xs[:n], xs[1 : n + 1], strict=True)) / n
    keep, w = (n - 1) / n, 1 / n
    for a, b in zip(xs[n:], xs[n + 1 :], strict=False):
        d = b - a
        if d > 0:
            gain, loss = gain * keep + d * w, loss * keep
        else:
            gain, loss = gain * keep, loss * keep - d * w
    if gain + loss <= 0:
        return 50.0
    return min(100.0, max(0.0, 100.0 * gain / (gain + loss)))


def bollinger(xs: Sequence[float], n: int = 20, k: float = 2.0) -> Bands | None:
    """Bollinger bands over the last `n` values with the population standard deviation."""
    if k < 0:
        raise ValueError(f"band width must not be negative, got {k}")
    mid = sma(xs, n)
    if mid is None:
        return None
    sd = math.sqrt(math.fsum((x - mid) ** 2 for x in xs[len(xs) - n :]) / n)
    return Bands(mid, mid + k * sd, mid - k * sd)


def true_ranges(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]) -> list[float]:
    """True range of every bar after the first: max(high - low, |high - prev close|, |low - prev close|)."""
    if not len(highs) == len(lows) == len(closes):
        raise ValueError(f"highs, lows and closes differ in length: {len(highs)}, {len(lows)}, {len(closes)}")
    return [max(h - lo, abs(h - pc), abs(lo - pc)) for h, lo, pc in zip(highs[1:], lows[1:], closes[:-1], strict=True)]


def atr(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float], n: int = 14) -> float | None:
    """Wilder's Average True Range; needs n + 1 bars (a true range needs the previous close)."""
    _check_period(n)
    trs = true_ranges(highs, lows, closes)
    if len(trs) < n:
        return None
    value = math.fsum(trs[:n]) / n
    for tr in trs[n:]:
        value += (tr - value) / n
    return max(0.0, value)
