"""Indicators over sequences of floats (closes, highs, lows). Pure; each returns the latest value,
or None when there is not enough data."""

from __future__ import annotations

import math
from collections.abc import Sequence


def sma(xs: Sequence[float], n: int) -> float | None:
    return sum(xs[-n:]) / n if n > 0 and len(xs) >= n else None


def ema(xs: Sequence[float], n: int) -> float | None:
    if n <= 0 or len(xs) < n:
        return None
    k = 2 / (n + 1)
    value = sum(xs[:n]) / n
    for x in xs[n:]:
        value = x * k + value * (1 - k)
    return value


def rsi(xs: Sequence[float], n: int = 14) -> float | None:
    if n <= 0 or len(xs) <= n:
        return None
    gains = losses = 0.0
    for a, b in zip(xs[-n - 1 : -1], xs[-n:], strict=True):
        d = b - a
        gains += max(d, 0.0)
        losses += max(-d, 0.0)
    if losses == 0:
        return 100.0 if gains > 0 else 50.0
    rs = gains / losses
    return 100 - 100 / (1 + rs)


def bollinger(xs: Sequence[float], n: int = 20, k: float = 2.0) -> tuple[float, float, float] | None:
    mid = sma(xs, n)
    if mid is None:
        return None
    sd = math.sqrt(sum((x - mid) ** 2 for x in xs[-n:]) / n)
    return mid, mid + k * sd, mid - k * sd


def atr(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float], n: int = 14) -> float | None:
    if n <= 0 or len(closes) <= n:
        return None
    trs = [
        max(h - lo, abs(h - pc), abs(lo - pc))
        for h, lo, pc in zip(highs[-n:], lows[-n:], closes[-n - 1 : -1], strict=True)
    ]
    return sum(trs) / n
