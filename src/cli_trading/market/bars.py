"""Candles: the Bar type and the historical data shipped inside the package."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"


class UnknownSymbol(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    ts: datetime
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
            datetime.fromisoformat(d["ts"].replace("Z", "+00:00")),
            Decimal(d["open"]),
            Decimal(d["high"]),
            Decimal(d["low"]),
            Decimal(d["close"]),
            Decimal(d["volume"]),
        )


def _files() -> dict[str, Path]:
    return {p.name.split("_", 1)[0]: p for p in sorted(DATA_DIR.glob("*.csv.gz"))}


def available_symbols() -> list[str]:
    return list(_files())


@cache
def load_bars(symbol: str) -> tuple[Bar, ...]:
    path = _files().get(symbol)
    if path is None:
        raise UnknownSymbol(f"no market data for {symbol!r}; available: {', '.join(available_symbols())}")
    with gzip.open(path, "rt", newline="") as fh:
        return tuple(
            Bar(
                symbol,
                datetime.fromisoformat(r["ts"].replace("Z", "+00:00")),
                Decimal(r["open"]),
                Decimal(r["high"]),
                Decimal(r["low"]),
                Decimal(r["close"]),
                Decimal(r["volume"]),
            )
            for r in csv.DictReader(fh)
        )
