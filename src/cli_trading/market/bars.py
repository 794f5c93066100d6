"""Candles: the Bar type and the historical data shipped inside the package.

Each shipped file is `data/<SYMBOL>_<timeframe>.csv.gz` (e.g. `BTC-USD_1h.csv.gz`) with columns
ts (ISO-8601 UTC, the bar's open time), open, high, low, close, volume (in the base currency),
sorted ascending. See `data/SOURCE.md` for where the data comes from. Every function takes an
optional `folder` of your own files, `<SYMBOL>_<label>.csv` or `.csv.gz`, laid out the same way,
which then replaces the shipped data. Every file is checked as it is read (`datacheck.py`): a
file with duplicate or out-of-order timestamps or impossible prices is refused with a report
naming its lines, and gaps are kept, filled or refused as the caller asks."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import IO, Any

from cli_trading.isotime import parse_iso
from cli_trading.market.datacheck import (
    DataError,
    GapPolicy,
    Problem,
    Report,
    Row,
    checked,
    fill_gaps,
    parse_record,
    parse_rows,
    scan,
)

DATA_DIR = Path(__file__).parent / "data"
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UnknownSymbol(ValueError):
    pass


def parse_timeframe(timeframe: str) -> timedelta:
    """'1h' -> 1 hour, '15m', '1d', '1w' (ccxt's spelling)."""
    try:
        return timedelta(seconds=int(timeframe[:-1]) * _UNITS[timeframe[-1]])
    except (KeyError, ValueError):
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


@dataclass(slots=True, unsafe_hash=True)
class Bar:
    """One candle. Treat it as immutable (it is hashable by value). Not a frozen dataclass: a
    frozen one's `__init__` sets every field through `object.__setattr__`, six times the cost of
    this one's, and a backtest streams a million bars."""

    symbol: str
    ts: datetime  # open time of the bar, tz-aware UTC
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    # open, high, low, close, volume as floats: given by a source that parsed them from text
    # (CSV files: `datacheck.Row.floats`), else made on the first `floats()` call and kept (a
    # Decimal to float conversion formats the number and parses it again, and the same parsed
    # history goes through many backtests: the optimizer's, load_bars' cache)
    _floats: tuple[float, float, float, float, float] | None = field(default=None, repr=False, compare=False)

    def floats(self) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) as floats, for indicator math (strategies' candles);
        money — sizing, fills, the ledger — uses the exact Decimal fields."""
        f = self._floats
        if f is None:
            f = self._floats = (
                float(self.open),
                float(self.high),
                float(self.low),
                float(self.close),
                float(self.volume),
            )
        return f

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
        o, h, lo, c, v = (Decimal(str(d[k])) for k in ("open", "high", "low", "close", "volume"))
        return cls(d["symbol"], parse_iso(d["ts"]), o, h, lo, c, v)


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


def _label_interval(label: str) -> timedelta | None:
    try:
        return parse_timeframe(label)
    except ValueError:
        return None


def read_rows(path: Path) -> tuple[list[Row], list[Problem]]:
    """The rows of a candle CSV file (plain or gzip) in file order, and the lines that do not parse."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as fh:
            return parse_rows(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def check_file(
    path: str | Path, *, interval: timedelta | None = None, gaps: GapPolicy | str = GapPolicy.ALLOW
) -> tuple[list[Row], Report]:
    """Read and check one candle file (see `datacheck`): the rows to use (sorted, gaps handled as
    `gaps` says) and the report. Raises DataError naming the lines when the file is unusable."""
    path = Path(path)
    if interval is None:
        interval = _label_interval(path.name.removesuffix(".gz").removesuffix(".csv").rsplit("_", 1)[-1])
    rows, unreadable = read_rows(path)
    return checked(rows, interval=interval, gaps=GapPolicy(gaps), source=str(path), unreadable=unreadable)


def read_csv(
    path: str | Path, symbol: str, *, interval: timedelta | None = None, gaps: GapPolicy | str = GapPolicy.ALLOW
) -> list[Bar]:
    """The bars of one candle file, checked (DataError naming the lines when it is unusable)."""
    rows, _ = check_file(path, interval=interval, gaps=gaps)
    return [Bar(symbol, r.ts, r.open, r.high, r.low, r.close, r.volume, r.floats) for r in rows]


def stream_file(
    path: str | Path, symbol: str, *, interval: timedelta | None = None, gaps: GapPolicy | str = GapPolicy.ALLOW
) -> Iterator[Bar]:
    """The bars of one candle file, read as they are consumed (constant memory, for histories
    too long to hold). The whole file is checked first (`datacheck.scan`, one pass): a DataError
    naming the lines before any bar comes out, never half-way through."""
    path, policy = Path(path), GapPolicy(gaps)
    if interval is None:
        interval = _label_interval(path.name.removesuffix(".gz").removesuffix(".csv").rsplit("_", 1)[-1])
    with _open(path) as fh:
        report = scan(csv.DictReader(fh), interval=interval, gaps=policy, source=str(path))
    if not report.ok:
        raise DataError(report)
    return _stream(path, symbol, report.interval if policy == GapPolicy.FILL else None)


def _stream(path: Path, symbol: str, fill: timedelta | None) -> Iterator[Bar]:
    with _open(path) as fh:
        prev: Row | None = None
        for line, rec in enumerate(csv.DictReader(fh), start=2):
            r = parse_record(line, rec)
            if not isinstance(r, Row):  # the file changed since it was checked
                raise DataError(Report(str(path), line - 1, fill or timedelta(0), (r,)))
            if fill and prev is not None:
                for f in fill_gaps([prev, r], fill)[1:-1]:
                    yield Bar(symbol, f.ts, f.open, f.high, f.low, f.close, f.volume)
            yield Bar(symbol, r.ts, r.open, r.high, r.low, r.close, r.volume, r.floats)
            prev = r


def _open(path: Path) -> IO[str]:
    try:
        return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


@cache
def _read(symbol: str, path: Path, _mtime_ns: int, gaps: GapPolicy) -> tuple[Bar, ...]:
    # keyed on the file's modification time: a file downloaded again is read again
    return tuple(read_csv(path, symbol, gaps=gaps))


def load_bars(symbol: str, folder: str | Path | None = None, *, gaps: GapPolicy | str = GapPolicy.ALLOW) -> list[Bar]:
    """All bars of `symbol`, oldest first (parsed once, then a fresh list per call). `folder`:
    your own files instead of the shipped ones. Every file is checked on load (`datacheck`): a
    duplicate or out-of-order timestamp, a bad price or an unreadable line is a DataError naming
    the lines; gaps are kept, filled or refused as `gaps` says."""
    path, _ = _entry(symbol, folder)
    return list(_read(symbol, path, path.stat().st_mtime_ns, GapPolicy(gaps)))


def bar_interval(symbol: str, folder: str | Path | None = None) -> timedelta:
    """The length of one bar: from the file name's label ('1h', '1d'), else the most common
    spacing of the data (1 hour for the shipped BTC-USD, 1 day for ETH-USD)."""
    path, label = _entry(symbol, folder)
    iv = _label_interval(label)
    if iv is not None:
        return iv
    ts = [b.ts for b in load_bars(symbol, folder)]
    steps = Counter(b - a for a, b in zip(ts, ts[1:], strict=False))
    return steps.most_common(1)[0][0] if steps else timedelta(0)
