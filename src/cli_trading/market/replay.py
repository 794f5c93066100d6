"""The replay feed: shipped candles played back at `speed` steps per second. Each step emits
the next bar of every symbol (symbols with different bar lengths, hourly BTC and daily ETH,
advance together). At the end of the data it starts again from the beginning (`loop`); bar
timestamps then jump back, which consumers treat as ordinary new bars."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cli_trading.market.bars import Bar, load_bars


class ReplayFeed:
    def __init__(
        self,
        symbols: list[str],
        *,
        speed: float = 1.0,
        start_index: int = 0,
        loop: bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.series = {s: load_bars(s) for s in symbols}  # raises UnknownSymbol early
        self.speed, self.loop, self.sleep = speed, loop, sleep
        self.index = start_index
        self.last: dict[str, Bar] = {}
        self.laps = 0

    async def stream(self) -> AsyncIterator[Bar]:
        longest = max(len(b) for b in self.series.values())
        while True:
            if self.index >= longest:
                if not self.loop:
                    return
                self.index, self.laps = 0, self.laps + 1
            for sym, bars in self.series.items():
                bar = bars[self.index % len(bars)]
                self.last[sym] = bar
                yield bar
            self.index += 1
            await self.sleep(1.0 / self.speed if self.speed > 0 else 0)

    def state(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "laps": self.laps,
            "speed": self.speed,
            "lastBar": {s: b.ts.isoformat() for s, b in self.last.items()},
        }
