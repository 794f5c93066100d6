"""Download candles from an exchange through ccxt's `fetch_ohlcv` into a candle file that
`load_bars`, the replay feed and `cli-trading backtest --data` read (`<SYMBOL>_<timeframe>.csv`,
columns ts,open,high,low,close,volume, ts the bar's ISO-8601 UTC open time).

Paginated: each call asks for up to `limit` candles from the open time after the last one held.
Resumable: when the file exists, the download continues after its last candle, so an
interrupted download is finished by running the same command again. Atomic: the file is
rewritten through a temporary file in the same folder, flushed to disk and renamed over the old
one, after each `checkpoint_seconds` and at the end; a crash leaves the previous complete file.
Only closed candles are stored (open time + timeframe <= now): the candle still forming would
otherwise be kept with its half-made prices. Transient ccxt errors (NetworkError and its
subclasses: timeouts, 5xx, rate limits; and OperationFailed) are retried with a growing pause; others propagate."""

from __future__ import annotations

import csv
import gzip
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli_trading.files import write_atomic
from cli_trading.market.bars import check_file, parse_timeframe, read_rows
from cli_trading.market.ccxt_feed import from_ccxt_symbol
from cli_trading.market.datacheck import COLUMNS, Report, Row, check

RETRIES = 5


@dataclass(frozen=True)
class Progress:
    held: int  # candles in the file so far (written or about to be)
    added: int  # candles added by this run
    last: datetime | None  # open time of the newest candle held
    total: int  # candles expected from the first requested time up to now


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    symbol: str
    timeframe: str
    before: int  # candles the file held when the run started
    added: int
    pages: int
    first: datetime | None
    last: datetime | None
    report: Report  # the check of the file as it stands at the end


def target_path(out_dir: str | Path, symbol: str, timeframe: str) -> Path:
    """`<out_dir>/<SYMBOL>_<timeframe>.csv` (`BTC/USDT` is stored as `BTC-USDT`); an existing
    `.csv.gz` of that name is continued instead."""
    base = Path(out_dir) / f"{from_ccxt_symbol(symbol)}_{timeframe}.csv"
    gz = base.with_name(base.name + ".gz")
    return gz if gz.exists() and not base.exists() else base


def _cell(d: Decimal) -> str:
    return format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")


def render_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        ts = r.ts.strftime("%Y-%m-%dT%H:%M:%SZ")
        w.writerow((ts, *(_cell(v) for v in (r.open, r.high, r.low, r.close, r.volume))))
    return buf.getvalue()


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """Replace `path` with `rows`, never leaving a half-written file (gzip when it ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = render_csv(rows).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    write_atomic(path, data, durable=True)


def _row(candle: Sequence[Any]) -> Row:
    ms, *values = candle[:6]
    o, h, lo, c, v = (Decimal(str(x if x is not None else 0)) for x in values)
    return Row(0, datetime.fromtimestamp(int(ms) / 1000, UTC), o, h, lo, c, v)


def _transient(exc: BaseException) -> bool:
    # ccxt's OperationFailed: NetworkError (timeouts, 5xx, rate limits) and the exchange's own
    # "internal error, try again" answers (Binance's -1001)
    return any(k.__name__ in ("NetworkError", "OperationFailed") for k in type(exc).__mro__)


def _fetch(exchange: Any, symbol: str, timeframe: str, since: int, limit: int, sleep: Callable[[float], Any]) -> Any:
    for attempt in range(RETRIES + 1):
        try:
            return exchange.fetch_ohlcv(symbol, timeframe, since, limit)
        except Exception as exc:
            if not _transient(exc) or attempt == RETRIES:
                raise
            sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")


def _existing(path: Path, tf: timedelta) -> list[Row]:
    if not path.exists():
        return []
    rows, _ = check_file(path, interval=tf)  # a damaged file is a DataError naming its lines
    return rows


def download(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since: datetime,
    path: Path,
    *,
    limit: int = 1000,
    checkpoint_seconds: float = 5.0,
    on_progress: Callable[[Progress], None] = lambda _: None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
) -> DownloadResult:
    """Fetch the closed candles of `symbol` (ccxt spelling, `BTC/USDT`) from `since`, or after the
    last candle `path` holds, up to now, into `path`; see the module docstring."""
    tf = parse_timeframe(timeframe)
    tf_ms = int(tf.total_seconds() * 1000)
    rows = _existing(path, tf)
    before = len(rows)
    start_ms = int(rows[-1].ts.timestamp() * 1000) + tf_ms if rows else int(since.timestamp() * 1000)
    first_ms = int(rows[0].ts.timestamp() * 1000) if rows else start_ms
    pages, written_at, dirty = 0, monotonic(), False

    def progress() -> Progress:
        expected = max((int(clock() * 1000) - first_ms) // tf_ms, len(rows))
        return Progress(len(rows), len(rows) - before, rows[-1].ts if rows else None, expected)

    on_progress(progress())
    try:
        while start_ms + tf_ms <= clock() * 1000:
            candles = _fetch(exchange, symbol, timeframe, start_ms, limit, sleep)
            pages += 1
            now_ms = clock() * 1000
            fresh = sorted({int(c[0]): c for c in candles or () if start_ms <= c[0] and c[0] + tf_ms <= now_ms}.items())
            if not fresh:
                break  # nothing more the exchange will give (the end of its history, or of the closed bars)
            rows += [_row(c) for _, c in fresh]
            start_ms, dirty = fresh[-1][0] + tf_ms, True
            if monotonic() - written_at >= checkpoint_seconds:
                write_csv(path, rows)
                written_at, dirty = monotonic(), False
            on_progress(progress())
    finally:
        if dirty:  # also when the exchange failed half-way: what was fetched is kept, to resume after it
            write_csv(path, rows)
    report = Report(str(path), 0, tf)
    if rows:
        found, unreadable = read_rows(path)
        report = check(found, interval=tf, source=str(path), unreadable=unreadable)
    return DownloadResult(
        path, symbol, timeframe, before, len(rows) - before, pages, rows[0].ts if rows else None,
        rows[-1].ts if rows else None, report,
    )  # fmt: skip
