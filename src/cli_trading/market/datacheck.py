"""Checks on imported candles: one pass over the rows of a CSV file, a report that names the rows.

Pure: rows in, a `Report` out; reading the file is `bars.py`'s job. A row is numbered by its line
in the file (the header is line 1), so a user can open the file at the line the report gives.

What is an error (the file is refused whatever the gap policy):
- `unreadable`: a timestamp or a number that does not parse, or a missing column;
- `non_positive`: an open, high, low or close at or below zero; `negative_volume`;
- `high_below_low`; `outside_range`: an open or close outside low..high;
- `duplicate`: a timestamp already seen on an earlier line; `out_of_order`: a timestamp earlier
  than the line before it; `misaligned`: a step between two bars that is not a whole number of
  bar lengths (a 15-minute bar in an hourly file).

A `gap` (a step of several bar lengths: bars missing) is handled by the gap policy:
`refuse` makes it an error, `allow` keeps the series as it is, `fill` inserts the missing bars
as flat candles at the previous close with volume 0 (the convention of freqtrade and of most
exchanges for an interval without trades).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from cli_trading.isotime import parse_iso

PRICES = ("open", "high", "low", "close")
COLUMNS = ("ts", *PRICES, "volume")
MAX_LISTED = 20  # problems listed by `Report.describe`; the count says how many there are in all


class GapPolicy(StrEnum):
    REFUSE = "refuse"
    FILL = "fill"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class Row:
    """One candle as read from a file: its line number, open time and values. `floats`: open,
    high, low, close and volume as floats, parsed from the file's text along with the Decimals
    (once, at parse: a Decimal to float conversion costs several times a float parse); None for
    rows made otherwise."""

    line: int
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    floats: tuple[float, float, float, float, float] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    lines: tuple[int, ...]  # the file lines concerned (for a gap: the lines on either side)
    detail: str

    def describe(self) -> str:
        where = "line " + " and ".join(str(n) for n in self.lines) if self.lines else "file"
        return f"{where}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lines": list(self.lines), "detail": self.detail}


@dataclass(frozen=True)
class Report:
    source: str
    rows: int
    interval: timedelta
    problems: tuple[Problem, ...] = ()
    gaps: tuple[Problem, ...] = ()
    missing_bars: int = 0  # bars absent in all the gaps together
    filled: int = 0  # bars inserted by the fill policy
    first: datetime | None = None
    last: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """A few lines for a person: what is wrong and where, the first MAX_LISTED of each kind."""
        head = f"{self.source}: {self.rows} rows"
        if self.first and self.last:
            head += f", {self.first.isoformat()} → {self.last.isoformat()}"
        lines = [head + f", bar length {_span(self.interval)}"]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += ["  " + p.describe() for p in self.problems[:MAX_LISTED]]
            lines += [f"  … and {len(self.problems) - MAX_LISTED} more"] * (len(self.problems) > MAX_LISTED)
        if self.gaps:
            lines.append(f"{len(self.gaps)} gap(s), {self.missing_bars} bar(s) missing" + _filled(self.filled))
            lines += ["  " + g.describe() for g in self.gaps[:MAX_LISTED]]
            lines += [f"  … and {len(self.gaps) - MAX_LISTED} more"] * (len(self.gaps) > MAX_LISTED)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "rows": self.rows,
            "intervalSeconds": int(self.interval.total_seconds()),
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "problems": [p.as_dict() for p in self.problems],
            "gaps": [g.as_dict() for g in self.gaps],
            "missingBars": self.missing_bars,
            "filled": self.filled,
        }


class DataError(ValueError):
    """A candle file that cannot be used as it is; `report` says why, naming the lines."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.describe())
        self.report = report


def _filled(n: int) -> str:
    return f" ({n} filled)" if n else ""


def _span(td: timedelta) -> str:
    s = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def parse_ts(value: str) -> datetime:
    """ISO-8601 (a naive value is UTC) or epoch milliseconds (ccxt's and Binance's spelling)."""
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return parse_iso(value)


def parse_record(line: int, rec: Mapping[str, str | None]) -> Row | Problem:
    """One CSV record (a dict by column name) as a Row, or the `unreadable` problem."""
    try:
        ts = parse_ts(rec["ts"] or "")
        texts = [(rec[k] or "").strip() for k in COLUMNS[1:]]
        o, h, lo, c, v = map(Decimal, texts)
        if not all(x.is_finite() for x in (o, h, lo, c, v)):
            raise InvalidOperation
        # the same numbers (a finite Decimal's text parses as a float, correctly rounded as
        # float(Decimal) is): what strategies read, without a Decimal to float conversion later
        floats = (float(texts[0]), float(texts[1]), float(texts[2]), float(texts[3]), float(texts[4]))
    except KeyError as exc:
        return Problem("unreadable", (line,), f"no column {exc.args[0]!r} (columns: {', '.join(COLUMNS)})")
    except (ValueError, InvalidOperation, OverflowError):
        return Problem("unreadable", (line,), f"cannot read {_shown(rec)}")
    return Row(line, ts, o, h, lo, c, v, floats)


def parse_rows(records: Iterable[Mapping[str, str | None]], *, first_line: int = 2) -> tuple[list[Row], list[Problem]]:
    """CSV records to Rows; the records that do not parse become `unreadable` problems.
    `first_line`: the file line of the first record."""
    rows: list[Row] = []
    bad: list[Problem] = []
    for line, rec in enumerate(records, start=first_line):
        got = parse_record(line, rec)
        if isinstance(got, Row):
            rows.append(got)
        else:
            bad.append(got)
    return rows, bad


def _shown(rec: Mapping[str, str | None]) -> str:
    return ",".join(str(rec.get(k, "")) for k in COLUMNS)


def row_problems(r: Row) -> list[Problem]:
    """What is wrong with one candle on its own."""
    out = []
    bad = [k for k in PRICES if getattr(r, k) <= 0]
    if bad:
        out.append(Problem("non_positive", (r.line,), f"{', '.join(bad)} not above zero ({_ohlc(r)})"))
    if r.volume < 0:
        out.append(Problem("negative_volume", (r.line,), f"volume {r.volume} is negative"))
    if r.high < r.low:
        out.append(Problem("high_below_low", (r.line,), f"high {r.high} below low {r.low}"))
    else:
        off = [k for k in ("open", "close") if not r.low <= getattr(r, k) <= r.high]
        if off:
            out.append(Problem("outside_range", (r.line,), f"{' and '.join(off)} outside low..high ({_ohlc(r)})"))
    return out


def _ohlc(r: Row) -> str:
    return f"o={r.open} h={r.high} l={r.low} c={r.close}"


def guess_interval(rows: Sequence[Row]) -> timedelta:
    """The most common positive step between consecutive rows (0 with fewer than two rows)."""
    steps = Counter(b.ts - a.ts for a, b in zip(rows, rows[1:], strict=False) if b.ts > a.ts)
    return steps.most_common(1)[0][0] if steps else timedelta(0)


def _order_problems(rows: Sequence[Row], interval: timedelta) -> tuple[list[Problem], list[Problem], int]:
    problems: list[Problem] = []
    gaps: list[Problem] = []
    missing = 0
    seen: dict[datetime, int] = {}
    prev: Row | None = None
    for r in rows:
        if r.ts in seen:
            problems.append(Problem("duplicate", (seen[r.ts], r.line), f"timestamp {r.ts.isoformat()} twice"))
        elif prev is not None and r.ts < prev.ts:
            problems.append(
                Problem("out_of_order", (prev.line, r.line), f"{r.ts.isoformat()} comes after {prev.ts.isoformat()}")
            )
        elif prev is not None and interval:
            step = r.ts - prev.ts
            if step % interval:
                problems.append(
                    Problem("misaligned", (prev.line, r.line), f"step of {step} is not a multiple of {_span(interval)}")
                )
            elif step > interval:
                n = step // interval - 1
                missing += n
                gaps.append(Problem("gap", (prev.line, r.line), f"{n} bar(s) missing after {prev.ts.isoformat()}"))
        seen.setdefault(r.ts, r.line)
        if prev is None or r.ts > prev.ts:
            prev = r
    return problems, gaps, missing


def check(
    rows: Sequence[Row],
    *,
    interval: timedelta | None = None,
    gaps: GapPolicy = GapPolicy.ALLOW,
    source: str = "data",
    unreadable: Sequence[Problem] = (),
) -> Report:
    """The report on `rows` (file order). `interval`: the bar length, else the most common step."""
    iv = interval if interval is not None else guess_interval(rows)
    problems = list(unreadable)
    if not rows and not unreadable:
        problems.append(Problem("empty", (), "no bars"))
    for r in rows:
        problems += row_problems(r)
    order, gap_list, missing = _order_problems(rows, iv)
    problems += order
    if gaps == GapPolicy.REFUSE:
        problems += [Problem("gap", g.lines, g.detail + " (gaps refused)") for g in gap_list]
    problems.sort(key=lambda p: p.lines or (0,))
    stamps = [r.ts for r in rows]
    return Report(
        source,
        len(rows) + len(unreadable),
        iv,
        tuple(problems),
        tuple(gap_list),
        missing,
        first=min(stamps, default=None),
        last=max(stamps, default=None),
    )


def fill_gaps(rows: Sequence[Row], interval: timedelta) -> list[Row]:
    """`rows` (ascending, aligned) with every missing bar inserted as a flat candle at the
    previous close, volume 0; an inserted row takes the line number of the row before it."""
    out: list[Row] = []
    for r in rows:
        if out and interval:
            prev = out[-1]
            ts = prev.ts + interval
            while ts < r.ts:
                c = prev.close
                out.append(Row(prev.line, ts, c, c, c, c, Decimal(0)))
                ts += interval
        out.append(r)
    return out


def checked(
    rows: Sequence[Row],
    *,
    interval: timedelta | None = None,
    gaps: GapPolicy = GapPolicy.ALLOW,
    source: str = "data",
    unreadable: Sequence[Problem] = (),
) -> tuple[list[Row], Report]:
    """Check `rows` and apply the gap policy: the rows to use and the report. Raises DataError
    (carrying the report) when anything is wrong."""
    report = check(rows, interval=interval, gaps=gaps, source=source, unreadable=unreadable)
    if not report.ok:
        raise DataError(report)
    if gaps != GapPolicy.FILL or not report.gaps:
        return list(rows), report
    full = fill_gaps(rows, report.interval)
    return full, replace(report, filled=len(full) - len(rows))


def scan(
    records: Iterable[Mapping[str, str | None]],
    *,
    interval: timedelta | None = None,
    gaps: GapPolicy = GapPolicy.ALLOW,
    source: str = "data",
    keep: int = 1000,
) -> Report:
    """`check` in one pass and constant memory, for files too long to hold: each row against
    the one before it (a repeated timestamp anywhere but right after itself also breaks the
    order, so the file is refused all the same). Lists the first `keep` problems and gaps."""
    problems: list[Problem] = []
    gap_list: list[Problem] = []
    prev: Row | None = None
    first: datetime | None = None
    rows = missing = 0
    iv = interval
    for line, rec in enumerate(records, start=2):
        rows += 1
        got = parse_record(line, rec)
        if isinstance(got, Problem):
            problems.append(got)
            continue
        problems += row_problems(got)
        first = first or got.ts
        if prev is not None:
            if iv is None and got.ts > prev.ts:
                iv = got.ts - prev.ts  # the first step: the bar length, when nothing else says it
            order, found, n = _order_problems([prev, got], iv or timedelta(0))
            problems += order
            gap_list += found
            missing += n
        if prev is None or got.ts > prev.ts:
            prev = got
        del problems[keep:], gap_list[keep:]
    if not rows:
        problems.append(Problem("empty", (), "no bars"))
    if gaps == GapPolicy.REFUSE:
        problems += [Problem("gap", g.lines, g.detail + " (gaps refused)") for g in gap_list]
    problems.sort(key=lambda p: p.lines or (0,))
    last = prev.ts if prev else None
    return Report(source, rows, iv or timedelta(0), tuple(problems), tuple(gap_list), missing, first=first, last=last)
