"""A live candle feed through ccxt, with the same `stream()` as the replay feed. Thin on purpose.

The exchange object (a `ccxt.async_support` exchange, or anything with the same
`fetch_ohlcv(symbol, timeframe, since, limit)`) is injected; the caller creates and closes it.
Each poll (just after a candle closes, or every `poll_seconds` at most) asks every symbol for
candles since the last one seen and yields, oldest first, only
bars that are new (open time after the last one yielded for that symbol) and closed (open time +
timeframe <= now): the candle still forming is left for a later poll. Transient ccxt errors
(subclasses of ccxt's NetworkError) are counted and retried at the next poll; others propagate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cli_trading.market.bars import Bar, parse_timeframe


def to_ccxt_symbol(symbol: str) -> str:
    return symbol.replace("-", "/")


def from_ccxt_symbol(symbol: str) -> str:
    return symbol.replace("/", "-")


def _transient(exc: BaseException) -> bool:
    return any(k.__name__ == "NetworkError" for k in type(exc).__mro__)


def next_poll_in(now_s: float, tf_ms: int, *, cap_s: float, lag_s: float = 1.0) -> float:
    """Seconds until just after the current candle closes (the exchange needs a moment to publish
    it), never longer than `cap_s`: a new candle is seen within seconds of its close whatever the
    timeframe, without asking the exchange every few seconds for a daily candle."""
    now_ms = now_s * 1000
    close_ms = (now_ms // tf_ms + 1) * tf_ms
    return max(0.05, min(cap_s, (close_ms - now_ms) / 1000 + lag_s))


def ohlcv_to_bar(symbol: str, row: Sequence[Any]) -> Bar:
    """One ccxt candle `[ms, open, high, low, close, volume]` to a Bar."""
    ms, *values = row[:6]
    o, h, lo, c, v = (Decimal(str(x if x is not None else 0)) for x in values)
    return Bar(symbol, datetime.fromtimestamp(ms / 1000, UTC), o, h, lo, c, v)


class CcxtFeed:
    def __init__(
        self,
        exchange: Any,
        symbols: list[str],
        *,
        timeframe: str = "1h",
        since_ms: int | None = None,
        limit: int | None = None,
        poll_seconds: float = 30.0,
        lag_s: float = 1.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.exchange, self.symbols, self.timeframe = exchange, list(dict.fromkeys(symbols)), timeframe
        self.tf_ms = int(parse_timeframe(timeframe).total_seconds() * 1000)
        self.since_ms, self.limit, self.poll_seconds, self.lag_s = since_ms, limit, poll_seconds, lag_s
        self.sleep, self.clock = sleep, clock
        self.seen_ms: dict[str, int] = {}  # open time of the last bar yielded, per symbol
        self.last: dict[str, Bar] = {}
        self.polls = self.errors = 0
        self.last_error: str | None = None

    async def poll(self, symbol: str) -> list[Bar]:
        """The new closed bars of one symbol, oldest first."""
        seen = self.seen_ms.get(symbol)
        since = seen if seen is not None else self.since_ms
        rows = await self.exchange.fetch_ohlcv(to_ccxt_symbol(symbol), self.timeframe, since, self.limit)
        now_ms = self.clock() * 1000
        fresh = sorted(
            {int(r[0]): r for r in rows or () if (seen is None or r[0] > seen) and r[0] + self.tf_ms <= now_ms}.items()
        )
        if fresh:
            self.seen_ms[symbol] = fresh[-1][0]
        return [ohlcv_to_bar(symbol, r) for _, r in fresh]

    async def stream(self) -> AsyncIterator[Bar]:
        while True:
            self.polls += 1
            for symbol in self.symbols:
                try:
                    bars = await self.poll(symbol)
                except Exception as exc:
                    if not _transient(exc):
                        raise
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    continue
                for bar in bars:
                    self.last[symbol] = bar
                    yield bar
            await self.sleep(next_poll_in(self.clock(), self.tf_ms, cap_s=self.poll_seconds, lag_s=self.lag_s))

    def state(self) -> dict[str, Any]:
        return {
            "source": "ccxt",
            "exchange": getattr(self.exchange, "id", type(self.exchange).__name__),
            "timeframe": self.timeframe,
            "polls": self.polls,
            "errors": self.errors,
            "lastError": self.last_error,
            "lastBar": {s: b.ts.isoformat() for s, b in self.last.items()},
        }
