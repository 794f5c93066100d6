"""Candles: the Bar type and the historical data shipped inside the package.

Each shipped file is `data/<SYMBOL>_<timeframe>.csv.gz` (e.g. `BTC-USD_1h.csv.gz`) with columns
ts (ISO-8601 UTC, the bar's open time), open, high, low, close, volume (in the base currency),
sorted ascending. See `data/SOURCE.md` for where the data comes from. Every function takes an
optional `folder` of your own files, `<SYMBOL>_<label>.csv` or `.csv.gz`, laid out the same way,
which then replaces the shipped data."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
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
def _files(folder: Path) -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    for p in sorted(folder.glob("*_*.csv*")):
        stem = p.name.removesuffix(".gz").removesuffix(".csv")
        if p.name.endswith((".csv", ".csv.gz")):
            symbol, label = stem.rsplit("_", 1)
            out[symbol] = (p, label)
    return out


def _folder(folder: str | Path | None) -> Path:
    return DATA_DIR if folder is None else Path(folder).resolve()


def available_symbols(folder: str | Path | None = None) -> list[str]:
    """Symbols with data: the shipped files, or those in `folder` (files `<SYMBOL>_<label>.csv[.gz]`)."""
    return list(_files(_folder(folder)))


def _entry(symbol: str, folder: str | Path | None) -> tuple[Path, str]:
    try:
        return _files(_folder(folder))[symbol]
    except KeyError:
        raise UnknownSymbol(
            f"no market data for {symbol!r} in {_folder(folder)}; "
            f"available symbols: {', '.join(available_symbols(folder)) or 'none'}"
        ) from None


@cache
def _load(symbol: str, folder: Path) -> tuple[Bar, ...]:
    path, _ = _entry(symbol, folder)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        bars = tuple(Bar.from_dict({"symbol": symbol, **row}) for row in csv.DictReader(fh))
    if not bars:
        raise ValueError(f"{path} holds no bars")
    return tuple(sorted({b.ts: b for b in bars}.values(), key=lambda b: b.ts))


def load_bars(symbol: str, folder: str | Path | None = None) -> list[Bar]:
    """All bars of `symbol`, oldest first (parsed once, then a fresh list per call). `folder`:
    your own files instead of the shipped ones; they are sorted and de-duplicated on load."""
    return list(_load(symbol, _folder(folder)))


def bar_interval(symbol: str, folder: str | Path | None = None) -> timedelta:
    """The length of one bar: from the file name's label ('1h', '1d'), else the most common
    spacing of the data (1 hour for the shipped BTC-USD, 1 day for ETH-USD)."""
    label = _entry(symbol, folder)[1]
    try:
        return parse_timeframe(label)
    except ValueError:
        ts = [b.ts for b in _load(symbol, _folder(folder))]
        gaps = Counter(b - a for a, b in zip(ts, ts[1:], strict=False))
        return gaps.most_common(1)[0][0] if gaps else timedelta(0)
