"""The price path the simulator trades on, drawn from real candles, and the clock that walks it.

Each candle becomes a path open → low → high → close (open → high → low → close for a falling
candle), straight lines in between, so the price moves continuously through every candle's range
and limit orders meet the highs and lows the data really had. All series share one *data time*
(epoch seconds) and loop over the stretch every series covers.

The clock maps wall time to data time: `speed` data seconds per wall second (60: an hourly candle
per minute), from an anchor that moves when the speed changes or the clock is advanced, and that a
restart resumes from. Server time and kline timestamps stay wall time, so a client's clock and
candle cadence behave as against the real exchange; a kline of one wall minute at speed 60 holds
one hour of data. Before the anchor with speed 0 (a frozen clock), history runs at speed 1, so
past klines are never flat.

Floats here: this is number-crunching of a path; prices leave as Decimal rounded to the tick."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli_trading.market.bars import Bar, bar_interval, load_bars

INTERVALS_S = {
    "1s": 1,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
}
_MONDAY = 4 * 86400  # 1970-01-05 was a Monday: Binance's weeks open on Mondays


@dataclass(frozen=True, slots=True)
class Tape:
    times: tuple[float, ...]  # path vertices, data time (s), ascending
    prices: tuple[float, ...]
    bar_starts: tuple[float, ...]
    bar_len: float
    volumes: tuple[float, ...]

    @classmethod
    def from_bars(cls, bars: list[Bar], length_s: float) -> Tape:
        times: list[float] = []
        prices: list[float] = []
        for b in bars:
            t = b.ts.timestamp()
            o, h, low, c = (float(x) for x in (b.open, b.high, b.low, b.close))
            mid = (low, h) if c >= o else (h, low)
            for frac, p in ((0.0, o), (1 / 3, mid[0]), (2 / 3, mid[1]), (0.999, c)):
                times.append(t + frac * length_s)
                prices.append(p)
        return cls(
            tuple(times),
            tuple(prices),
            tuple(b.ts.timestamp() for b in bars),
            length_s,
            tuple(float(b.volume) for b in bars),
        )

    def price_at(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i <= 0:
            return self.prices[0]
        if i >= len(self.times):
            return self.prices[-1]
        t0, t1, p0, p1 = self.times[i - 1], self.times[i], self.prices[i - 1], self.prices[i]
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0)

    def segment(self, a: float, b: float) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) over data time [a, b], within the data."""
        pa, pb = self.price_at(a), self.price_at(b)
        inner = self.prices[bisect.bisect_right(self.times, a) : bisect.bisect_left(self.times, b)]
        hi, lo = max(pa, pb, *inner), min(pa, pb, *inner)
        vol = 0.0
        for i in range(max(0, bisect.bisect_right(self.bar_starts, a) - 1), bisect.bisect_left(self.bar_starts, b)):
            s = self.bar_starts[i]
            overlap = min(b, s + self.bar_len) - max(a, s)
            if overlap > 0:
                vol += self.volumes[i] * overlap / self.bar_len
        return pa, hi, lo, pb, vol


class Tapes:
    """Every market's tape over the common, looping data span [lo, hi)."""

    def __init__(self, series: dict[str, str], folder: str | Path | None = None) -> None:
        self.by_symbol: dict[str, Tape] = {}
        los, his = [], []
        for symbol, name in series.items():
            bars = load_bars(name, folder)
            length = bar_interval(name, folder).total_seconds()
            self.by_symbol[symbol] = Tape.from_bars(bars, length)
            los.append(bars[0].ts.timestamp())
            his.append(bars[-1].ts.timestamp() + length)
        self.lo, self.hi = max(los), min(his)
        if self.hi <= self.lo:
            raise ValueError(f"the candle series {', '.join(series.values())} have no time span in common")

    @property
    def span(self) -> float:
        return self.hi - self.lo

    def default_start(self) -> float:
        """Thirty days into the data (history for indicators), or its middle when shorter."""
        return self.lo + min(30 * 86400.0, self.span / 2)

    def wrap(self, t: float) -> float:
        return self.lo + (t - self.lo) % self.span

    def price(self, symbol: str, t: float) -> float:
        return self.by_symbol[symbol].price_at(self.wrap(t))

    def window(self, symbol: str, a: float, b: float) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) over data time [a, b], across loops."""
        tape = self.by_symbol[symbol]
        if b - a >= self.span:
            o, c = tape.price_at(self.wrap(a)), tape.price_at(self.wrap(b))
            return o, max(tape.prices), min(tape.prices), c, sum(tape.volumes) * (b - a) / self.span
        start, left, parts = self.wrap(a), b - a, []
        while True:
            end = min(start + left, self.hi)
            parts.append(tape.segment(start, end))
            left -= end - start
            if left <= 0:
                break
            start = self.lo
        return (parts[0][0], max(p[1] for p in parts), min(p[2] for p in parts), parts[-1][3], sum(p[4] for p in parts))


@dataclass(slots=True)
class Clock:
    anchor_wall: float  # wall time (s) of the anchor
    anchor_data: float  # data time (s) at the anchor
    speed: float  # data seconds per wall second; 0 freezes the market

    def data_time(self, wall: float) -> float:
        rate = self.speed if (self.speed > 0 or wall >= self.anchor_wall) else 1.0
        return self.anchor_data + (wall - self.anchor_wall) * rate

    def reanchor(self, wall: float, *, speed: float | None = None, advance_s: float = 0.0) -> None:
        self.anchor_data = self.data_time(wall) + advance_s
        self.anchor_wall = wall
        if speed is not None:
            self.speed = speed

    def describe(self, wall: float) -> dict[str, object]:
        data = self.data_time(wall)
        return {"speed": self.speed, "dataTime": datetime.fromtimestamp(data, UTC).isoformat()}


def interval_ms(name: str) -> int | None:
    s = INTERVALS_S.get(name)
    return None if s is None else s * 1000


def align(ms: int, step_ms: int) -> int:
    """Open time of the kline holding `ms` (weeks open on Mondays, as on Binance)."""
    offset = _MONDAY * 1000 if step_ms == INTERVALS_S["1w"] * 1000 else 0
    return (ms - offset) // step_ms * step_ms + offset


def kline_opens(step_ms: int, now_ms: int, start: int | None, end: int | None, limit: int) -> list[int]:
    """Open times Binance would answer: from `start` (aligned up) or the `limit` latest up to
    `end` (or now); never a kline that has not opened yet."""
    last = align(min(end, now_ms) if end is not None else now_ms, step_ms)
    if start is not None:
        first = align(start + step_ms - 1, step_ms)
        return list(range(first, last + 1, step_ms)[:limit])
    return [last - i * step_ms for i in range(limit - 1, -1, -1)]
