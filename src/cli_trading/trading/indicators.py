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


# -- incremental indicators: constant work per value ------------------------------------------
#
# The same definitions as the functions above, fed one value at a time (oldest first): after the
# same values, `value` equals the function's result (up to float rounding). Strategies keep one
# per symbol and update it once per closed bar, in backtests and in live trading alike.


class EMA:
    """Exponential moving average (alpha = 2 / (n + 1)), seeded with the SMA of the first `n`."""

    __slots__ = ("n", "alpha", "value", "_count", "_seed")

    def __init__(self, n: int) -> None:
        _check_period(n)
        self.n, self.alpha = n, 2 / (n + 1)
        self.value: float | None = None
        self._count, self._seed = 0, 0.0

    def update(self, x: float) -> float | None:
        v = self.value
        if v is not None:
            v += self.alpha * (x - v)
            self.value = v
            return v
        self._count += 1
        self._seed += x
        if self._count == self.n:
            self.value = self._seed / self.n
        return self.value


class Rolling:
    """Mean and population standard deviation of the last `n` values. Running sums are kept
    relative to an anchor and recomputed exactly from the window once per `n` updates (amortised
    constant work), so float error cannot build up over millions of bars."""

    __slots__ = ("n", "_buf", "_i", "_full", "_anchor", "_sum", "_sq", "_since")

    def __init__(self, n: int) -> None:
        _check_period(n)
        self.n = n
        self._buf: list[float] = []
        self._i, self._full, self._since = 0, False, 0
        self._anchor = self._sum = self._sq = 0.0

    def update(self, x: float) -> None:
        if not self._full:
            if not self._buf:
                self._anchor = x
            self._buf.append(x)
            d = x - self._anchor
            self._sum += d
            self._sq += d * d
            self._full = len(self._buf) == self.n
            return
        # the full window, every update: locals, and no modulo (this runs on every bar)
        buf, i, n = self._buf, self._i, self.n
        old = buf[i]
        buf[i] = x
        i += 1
        self._i = 0 if i == n else i
        since = self._since + 1
        if since >= n:
            self._recompute()
            return
        self._since = since
        a = self._anchor
        do, dn = old - a, x - a
        self._sum += dn - do
        self._sq += dn * dn - do * do

    def _recompute(self) -> None:
        self._since = 0
        buf = self._buf
        self._anchor = a = math.fsum(buf) / self.n
        self._sum = math.fsum([x - a for x in buf])
        self._sq = math.fsum([(x - a) ** 2 for x in buf])

    @property
    def ready(self) -> bool:
        return self._full

    @property
    def mean(self) -> float:
        return self._anchor + self._sum / self.n

    @property
    def var(self) -> float:
        m = self._sum / self.n
        return max(self._sq / self.n - m * m, 0.0)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def moments(self) -> tuple[float, float]:
        """(`mean`, `var`) in one call (strategies read both on every bar)."""
        m = self._sum / self.n
        var = self._sq / self.n - m * m
        return self._anchor + m, (0.0 if var < 0.0 else var)  # max(var, 0.0) without the call

    def bands(self, k: float) -> Bands:
        mid, sd = self.mean, self.std
        return Bands(mid, mid + k * sd, mid - k * sd)


class RSI:
    """Wilder's RSI (see `rsi`): ready after n + 1 values."""

    __slots__ = ("n", "_prev", "_count", "_gain", "_loss", "_keep", "_w")

    def __init__(self, n: int = 14) -> None:
        _check_period(n)
        self.n = n
        self._prev: float | None = None
        self._count = 0
        self._gain = self._loss = 0.0
        self._keep, self._w = (n - 1) / n, 1 / n

    def update(self, x: float) -> None:
        """Feed the next value; read `value` when you need it (it costs a division)."""
        prev, self._prev = self._prev, x
        if prev is None:
            return
        d = x - prev
        if self._count < self.n:  # the seed: the mean of the first n changes
            self._count += 1
            if d > 0:
                self._gain += d / self.n
            else:
                self._loss -= d / self.n
            return
        keep = self._keep
        if d > 0:
            self._gain = self._gain * keep + d * self._w
            self._loss *= keep
        else:
            self._gain *= keep
            self._loss = self._loss * keep - d * self._w

    @property
    def value(self) -> float | None:
        if self._count < self.n:
            return None
        g, lo = self._gain, self._loss
        if g + lo <= 0:
            return 50.0
        return min(100.0, max(0.0, 100.0 * g / (g + lo)))


class ATR:
    """Wilder's Average True Range (see `atr`): ready after n + 1 bars."""

    __slots__ = ("n", "_prev_close", "_count", "_sum", "value")

    def __init__(self, n: int = 14) -> None:
        _check_period(n)
        self.n = n
        self._prev_close: float | None = None
        self._count, self._sum = 0, 0.0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        pc, self._prev_close = self._prev_close, close
        if pc is None:
            return None
        tr = max(high - low, abs(high - pc), abs(low - pc))
        if self.value is not None:
            self.value = max(0.0, self.value + (tr - self.value) / self.n)
            return self.value
        self._count += 1
        self._sum += tr
        if self._count == self.n:
            self.value = max(0.0, self._sum / self.n)
        return self.value
