"""Bars for a backtest: the shipped history, a folder of your own, or one CSV file, streamed.

A backtest consumes *steps*: the bars that close at the same time, in the order the symbols were
given, ordered by close time (`ts + bar length`) — the replay feed's order (market/replay.py), so
a backtest and a replay under `cli-trading up` see the bars in the same sequence.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cli_trading.isotime import parse_iso
from cli_trading.market.bars import Bar, bar_interval, load_bars, parse_timeframe, stream_file
from cli_trading.market.datacheck import GapPolicy

Step = Sequence[Bar]


class DataError(ValueError):
    """Bars that cannot be backtested (missing, out of order, unreadable): the message says which."""


def _peek_interval(bars: Iterable[Bar]) -> tuple[timedelta, Iterator[Bar]]:
    it = iter(bars)
    head = list(itertools.islice(it, 2))
    interval = head[1].ts - head[0].ts if len(head) == 2 else timedelta(0)
    return interval, itertools.chain(head, it)


def timeline(series: Mapping[str, Iterable[Bar]], intervals: Mapping[str, timedelta] | None = None) -> Iterator[Step]:
    """Merge per-symbol bar streams (each oldest first) into steps by close time. `intervals`:
    each symbol's bar length; by default the spacing of its first two bars. Streams: memory does
    not grow with the length of the history."""
    if len(series) == 1:  # one symbol: every bar is a step of its own
        (bars,) = series.values()
        return ([b] for b in bars)
    return _merged(series, intervals)


def _merged(series: Mapping[str, Iterable[Bar]], intervals: Mapping[str, timedelta] | None) -> Iterator[Step]:
    streams: list[Iterator[tuple[datetime, int, Bar]]] = []
    for order, (symbol, bars) in enumerate(series.items()):
        if intervals and symbol in intervals:
            iv, it = intervals[symbol], iter(bars)
        else:
            iv, it = _peek_interval(bars)
        streams.append(_closing(it, iv, order))
    step: list[Bar] = []
    at: datetime | None = None
    for close, _, bar in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
        if close != at and step:
            yield step
            step = []
        at = close
        step.append(bar)
    if step:
        yield step


def _closing(bars: Iterator[Bar], iv: timedelta, order: int) -> Iterator[tuple[datetime, int, Bar]]:
    """Each bar with its closing time. A function of its own so that each symbol keeps its own
    interval: a generator expression in the loop above read `iv` late, and every symbol took
    the last one's bar length."""
    for b in bars:
        yield b.ts + iv, order, b


def stream_csv(path: Path, symbol: str, gaps: GapPolicy | str = GapPolicy.ALLOW) -> Iterator[Bar]:
    """Bars of one CSV file (ts,open,high,low,close,volume; .csv or .csv.gz), read as they are
    consumed. The file is checked first, in one pass (market/datacheck.py): duplicate or
    out-of-order timestamps, impossible prices, unreadable lines are a DataError naming the lines
    before any bar is backtested; gaps are kept, filled or refused as `gaps` says."""
    return stream_file(path, symbol, gaps=gaps)


def _window(bars: Iterable[Bar], start: datetime | None, end: datetime | None) -> Iterator[Bar]:
    for b in bars:
        if end is not None and b.ts >= end:
            return
        if start is None or b.ts >= start:
            yield b


def symbol_of_file(path: Path) -> tuple[str, str]:
    """`BTC-USD_1h.csv[.gz]` -> ("BTC-USD", "1h")."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    symbol, _, label = stem.rpartition("_")
    return (symbol or stem), label


def load_series(
    symbols: Sequence[str],
    data: Path | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    gaps: GapPolicy | str = GapPolicy.ALLOW,
) -> tuple[dict[str, Iterable[Bar]], dict[str, timedelta]]:
    """The bars of `symbols` in [start, end) and their bar lengths. `data`: None for the shipped
    history, a folder of `<SYMBOL>_<timeframe>.csv[.gz]` files, or one such CSV file (streamed;
    then `symbols` is its symbol or empty). Every file is checked as it is read
    (market/datacheck.py); `gaps`: keep, fill or refuse missing bars."""
    if data is not None and data.is_file():
        sym, label = symbol_of_file(data)
        symbol = symbols[0] if len(symbols) == 1 else sym
        if len(symbols) > 1:
            raise DataError(f"{data} is one file: give at most one symbol (got {', '.join(symbols)})")
        try:
            iv = parse_timeframe(label)
        except ValueError:
            iv, _ = _peek_interval(stream_csv(data, symbol, gaps))
        return {symbol: _window(stream_csv(data, symbol, gaps), start, end)}, {symbol: iv}
    if data is not None and not data.is_dir():
        raise DataError(f"--data {data}: no such file or folder")
    series: dict[str, Iterable[Bar]] = {}
    intervals: dict[str, timedelta] = {}
    for s in symbols:
        bars = load_bars(s, data, gaps=gaps)  # UnknownSymbol (a ValueError) names the available ones
        series[s] = list(_window(bars, start, end))
        intervals[s] = bar_interval(s, data)
        if not series[s]:
            raise DataError(f"no {s} bars between {start or 'the start'} and {end or 'the end'}")
    return _common_span(series, intervals), intervals


def _common_span(series: dict[str, Iterable[Bar]], intervals: dict[str, timedelta]) -> dict[str, Iterable[Bar]]:
    """Several symbols: only the stretch every one of them covers (by close time), as the replay
    feed does (market/replay.py), so a backtest and a replay trade the same bars."""
    lists = {s: b for s, b in series.items() if isinstance(b, list)}
    if len(lists) < 2:
        return series
    first = max(b[0].ts + intervals[s] for s, b in lists.items())
    last = min(b[-1].ts + intervals[s] for s, b in lists.items())
    out = {s: [x for x in b if first <= x.ts + intervals[s] <= last] for s, b in lists.items()}
    if not all(out.values()):
        raise DataError(f"the bars of {', '.join(series)} have no time span in common")
    return dict(out)


def parse_date(value: str | None) -> datetime | None:
    """`2018-01-01` or an ISO timestamp, as UTC; None stays None."""
    return parse_iso(value) if value else None
