"""Candles: the Bar type and the historical data shipped inside the package.

Each shipped file is `data/<SYMBOL>_<timeframe>.csv.gz` (e.g. `BTC-USD_1h.csv.gz`) with columns
ts (ISO-8601 UTC, the bar's open time), open, high, low, close, volume (in the base currency),
sorted ascending. See `data/SOURCE.md` for where the data comes from."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UnknownSymbol(ValueError):
    pass


def parse_ts(value: str) -> datetime:
    """ISO-8601 to a tz-aware UTC datetime; a naive value is taken as UTC."""
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_timeframe(timeframe: str) -> timedelta:
    """'1h' -> 1 hour, '15m', '1d', '1w' (ccxt's spelling)."""
    try:
        return timedelta(seconds=int(timeframe[:-1]) * _UNITS[timeframe[-1]])
    except (KeyError, ValueError):
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    ts: datetime  # open time of the bar, tz-aware UTC
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ts": self.ts.isoformat(),
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": str(self.volume),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bar:
        return cls(
            d["symbol"],
            parse_ts(d["ts"]),
            *(Decimal(str(d[k])) for k in ("open", "high", "low", "close", "volume")),
        )


@cache
def _files() -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    for p in sorted(DATA_DIR.glob("*_*.csv.gz")):
        symbol, timeframe = p.name.removesuffix(".csv.gz").rsplit("_", 1)
        out[symbol] = (p, timeframe)
    return out


def available_symbols() -> list[str]:
    return list(_files())


def _entry(symbol: str) -> tuple[Path, str]:
    try:
        return _files()[symbol]
    except KeyError:
        raise UnknownSymbol(
            f"no market data for {symbol!r}; available symbols: {', '.join(available_symbols())}"
        ) from None


def bar_interval(symbol: str) -> timedelta:
    """The length of one bar of the shipped series (1 hour for BTC-USD, 1 day for ETH-USD)."""
    return parse_timeframe(_entry(symbol)[1])


@cache
def _load(symbol: str) -> tuple[Bar, ...]:
    path, _ = _entry(symbol)
    with gzip.open(path, "rt", newline="") as fh:
        return tuple(Bar.from_dict({"symbol": symbol, **row}) for row in csv.DictReader(fh))


def load_bars(symbol: str) -> list[Bar]:
    """All shipped bars of `symbol`, oldest first (parsed once, then a fresh list per call)."""
    return list(_load(symbol))
