"""The replay feed: shipped candles played back as if they were arriving live.

The bars of all symbols are merged into one timeline of *steps* ordered by bar close time
(`ts + bar length`): a bar is released once it has closed, so an hourly BTC bar and the daily
ETH bar of the same day come out in the step at midnight that ends both, with no look-ahead
across symbols. Bars closing at the same time form one step and come out together, in the
order the symbols were given. The timeline covers only the stretch where every requested symbol
has data (from the latest first close to the earliest last close); with one symbol, all of it.

Pacing: `speed` steps per second of wall time (one step = one distinct close time), the first
step at once, then `sleep(1 / speed)` before each next one; `speed <= 0` means as fast as
possible (`sleep(0)`, which only yields to the event loop).

Step mode: `after_step`, when given, is awaited after each step's bars have been consumed
(`market/stepper.py` waits there for the pipeline to settle).

Looping: at the end of the timeline, with `loop`, the replay starts again from step 0 and
`laps` goes up by one. Bar timestamps then jump back to the start of the data: they are
monotonic within a lap, not across laps, and consumers see the old bars again as new bars.

One feed is one cursor: a later call of `stream()` goes on from `position`. `folder`: your own
candle files instead of the shipped ones (see `bars`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cli_trading.market.bars import Bar, bar_interval, load_bars

Step = tuple[datetime, tuple[Bar, ...]]


def build_timeline(symbols: list[str], folder: str | Path | None = None) -> list[Step]:
    """Steps (close time, bars closing then) over the window all `symbols` cover."""
    series = {s: (load_bars(s, folder), bar_interval(s, folder)) for s in symbols}  # raises UnknownSymbol
    start = max(bars[0].ts + iv for bars, iv in series.values())
    end = min(bars[-1].ts + iv for bars, iv in series.values())
    steps: dict[datetime, list[Bar]] = {}
    for bars, iv in series.values():
        for bar in bars:
            if start <= bar.ts + iv <= end:
                steps.setdefault(bar.ts + iv, []).append(bar)
    if not steps:
        raise ValueError(f"the market data of {', '.join(symbols)} has no time span in common")
    return [(t, tuple(steps[t])) for t in sorted(steps)]


class ReplayFeed:
    def __init__(
        self,
        symbols: list[str],
        *,
        speed: float = 1.0,
        start_index: int = 0,
        loop: bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        folder: str | Path | None = None,
        after_step: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise ValueError("ReplayFeed needs at least one symbol")
        self.steps = build_timeline(self.symbols, folder)
        if not 0 <= start_index < len(self.steps):
            raise ValueError(f"start_index {start_index} outside 0..{len(self.steps) - 1}")
        self.speed, self.loop, self.sleep = speed, loop, sleep
        self.after_step = after_step  # awaited once a step's bars are all out (step mode)
        self.finished = False
        self.index = start_index  # the next step to emit
        self.laps = 0
        self.time: datetime | None = None  # close time of the last step emitted
        self.last: dict[str, Bar] = {}

    @property
    def position(self) -> int:
        return self.index

    async def stream(self) -> AsyncIterator[Bar]:
        delay = 1.0 / self.speed if self.speed > 0 else 0.0
        first = True
        while True:
            if self.index >= len(self.steps):
                if not self.loop:
                    self.finished = True
                    return
                self.index, self.laps = 0, self.laps + 1
            if not first:
                await self.sleep(delay)
            first = False
            self.time, bars = self.steps[self.index]
            self.index += 1
            for bar in bars:
                self.last[bar.symbol] = bar
                yield bar
            if self.after_step is not None:
                await self.after_step()

    def state(self) -> dict[str, Any]:
        return {
            "source": "replay",
            "index": self.index,
            "steps": len(self.steps),
            "laps": self.laps,
            "speed": self.speed,
            "time": self.time.isoformat() if self.time else None,
            "finished": self.finished,
            "lastBar": {s: b.ts.isoformat() for s, b in self.last.items()},
        }
