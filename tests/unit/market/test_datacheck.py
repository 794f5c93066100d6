"""Checks on imported candle files: the report names the lines; the gap policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.market.bars import check_file, load_bars, read_csv
from cli_trading.market.datacheck import DataError, GapPolicy, Row, check, checked, fill_gaps, parse_rows
from cli_trading.market.download import render_csv

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HEADER = "ts,open,high,low,close,volume\n"


def row(i: int, c: float = 100.0, *, line: int | None = None, ts: datetime | None = None) -> Row:
    d = Decimal(str(c))
    return Row(line if line is not None else i + 2, ts or T0 + i * H, d, d + 1, d - 1, d, Decimal(5))


def series(n: int) -> list[Row]:
    return [row(i, 100.0 + i) for i in range(n)]


def kinds(rows: list[Row], **kw: object) -> list[tuple[str, tuple[int, ...]]]:
    return [(p.kind, p.lines) for p in check(rows, interval=H, **kw).problems]  # type: ignore[arg-type]


def test_a_sound_series_has_no_problem() -> None:
    report = check(series(10), interval=H)
    assert report.ok and not report.gaps and report.rows == 10
    assert (report.first, report.last) == (T0, T0 + 9 * H)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("low", "0", "non_positive"),
        ("low", "-1", "non_positive"),
        ("volume", "-3", "negative_volume"),
        ("high", "50", "high_below_low"),
        ("open", "200", "outside_range"),
        ("close", "98", "outside_range"),
    ],
)
def test_a_bad_candle_is_named_by_its_line(field: str, value: str, kind: str) -> None:
    rows = series(6)
    r = rows[3]
    rows[3] = Row(**{**{k: getattr(r, k) for k in Row.__slots__}, field: Decimal(value)})  # type: ignore[arg-type]
    assert kinds(rows) == [(kind, (5,))]  # the fourth data row is line 5 of the file
    with pytest.raises(DataError, match="line 5"):
        checked(rows, interval=H)


def test_duplicate_and_out_of_order_timestamps_name_both_lines() -> None:
    rows = series(5)
    dup = rows[:3] + [row(1, line=5)] + [row(3, line=6)]
    assert kinds(dup) == [("duplicate", (3, 5))]
    swapped = [rows[0], rows[2], rows[1], rows[3]]
    swapped = [Row(i + 2, *(getattr(r, k) for k in Row.__slots__[1:])) for i, r in enumerate(swapped)]
    assert kinds(swapped) == [("out_of_order", (3, 4))]


def test_misaligned_step_is_an_error() -> None:
    rows = [row(0), row(1, ts=T0 + timedelta(minutes=90)), row(2, ts=T0 + 3 * H)]
    assert kinds(rows) == [("misaligned", (2, 3)), ("misaligned", (3, 4))]


def test_gap_policies() -> None:
    rows = [row(0, 100), row(1, 101), row(4, 104, line=4), row(5, 105, line=5)]
    report = check(rows, interval=H)
    assert report.ok and report.missing_bars == 2 and [g.lines for g in report.gaps] == [(3, 4)]
    assert "2 bar(s) missing" in report.describe() and "line 3 and 4" in report.describe()
    assert kinds(rows, gaps=GapPolicy.REFUSE) == [("gap", (3, 4))]
    with pytest.raises(DataError, match="gaps refused"):
        checked(rows, interval=H, gaps=GapPolicy.REFUSE)
    kept, _ = checked(rows, interval=H, gaps=GapPolicy.ALLOW)
    assert kept == rows
    full, filled = checked(rows, interval=H, gaps=GapPolicy.FILL)
    assert filled.filled == 2 and [r.ts for r in full] == [T0 + i * H for i in range(6)]
    assert [(r.open, r.high, r.low, r.close, r.volume) for r in full[2:4]] == [(Decimal("101"),) * 4 + (0,)] * 2


def test_unreadable_lines_and_missing_columns() -> None:
    rows, bad = parse_rows([{"ts": "2024-01-01", "open": "1", "high": "1", "low": "1", "close": "x", "volume": "1"}])
    assert rows == [] and [(p.kind, p.lines) for p in bad] == [("unreadable", (2,))]
    _, bad = parse_rows([{"ts": "2024-01-01", "open": "1"}])
    assert "no column 'high'" in bad[0].detail
    _, bad = parse_rows([{"ts": "2024-01-01", "open": "nan", "high": "1", "low": "1", "close": "1", "volume": "1"}])
    assert bad and bad[0].kind == "unreadable"
    assert not check([], interval=H).ok


def test_epoch_milliseconds_are_read() -> None:
    rows, bad = parse_rows([{"ts": "1704067200000", "open": "1", "high": "1", "low": "1", "close": "1", "volume": "0"}])
    assert not bad and rows[0].ts == T0


def test_file_checks_and_the_loader_refuse_a_bad_file(tmp_path: Path) -> None:
    body = HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T01:00:00Z,2,1.5,1.8,1.9,5\n"
    (tmp_path / "SOL-USD_1h.csv").write_text(body)
    with pytest.raises(DataError, match=r"line 3: high 1.5 below low 1.8"):
        load_bars("SOL-USD", tmp_path)
    with pytest.raises(DataError) as info:
        check_file(tmp_path / "SOL-USD_1h.csv")
    assert info.value.report.problems[0].kind == "high_below_low"


def test_loader_applies_the_gap_policy_and_rereads_a_changed_file(tmp_path: Path) -> None:
    f = tmp_path / "SOL-USD_1h.csv"
    f.write_text(HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T03:00:00Z,2,3,2,3,5\n")
    assert len(load_bars("SOL-USD", tmp_path)) == 2
    assert len(load_bars("SOL-USD", tmp_path, gaps="fill")) == 4
    with pytest.raises(DataError, match="2 bar"):
        load_bars("SOL-USD", tmp_path, gaps="refuse")
    f.write_text(HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n")
    import os

    os.utime(f, ns=(1, 1))  # a different modification time: read again
    assert len(load_bars("SOL-USD", tmp_path)) == 1


def test_shipped_files_pass_the_check() -> None:
    assert len(read_csv(Path(__file__).parents[3] / "src/cli_trading/market/data/BTC-USD_1h.csv.gz", "BTC-USD")) == 5000


# -- properties --------------------------------------------------------------------------------

closes = st.lists(st.decimals(min_value=1, max_value=10**6, places=2), min_size=1, max_size=60)


def _rows(cs: list[Decimal], keep: list[bool] | None = None) -> list[Row]:
    out, line = [], 2
    for i, c in enumerate(cs):
        if keep is None or keep[i % len(keep)] or i == 0:
            out.append(Row(line, T0 + i * H, c, c * 2, c / 2, c, Decimal(1)))
            line += 1
    return out


@settings(max_examples=60, deadline=None)
@given(closes, st.lists(st.booleans(), min_size=1, max_size=8))
def test_fill_gives_a_contiguous_series_that_passes_the_refuse_policy(cs: list[Decimal], keep: list[bool]) -> None:
    rows = _rows(cs, keep)
    report = check(rows, interval=H)
    assert report.ok
    full = fill_gaps(rows, H)
    assert len(full) == len(rows) + report.missing_bars
    assert [r.ts for r in full] == [rows[0].ts + i * H for i in range(len(full))]
    assert {r.ts: r for r in rows}.items() <= {r.ts: r for r in full}.items(), "original bars kept unchanged"
    assert check(full, interval=H, gaps=GapPolicy.REFUSE).ok


@settings(max_examples=60, deadline=None)
@given(closes.filter(lambda cs: len(cs) >= 2), st.data())
def test_any_single_fault_is_reported_at_its_line(cs: list[Decimal], data: st.DataObject) -> None:
    rows = _rows(cs)
    i = data.draw(st.integers(0, len(rows) - 1))
    fault = data.draw(st.sampled_from(["zero", "inverted", "duplicate"]))
    r = rows[i]
    if fault == "zero":
        rows[i] = Row(r.line, r.ts, r.open, r.high, Decimal(0), r.close, r.volume)
    elif fault == "inverted":
        rows[i] = Row(r.line, r.ts, r.open, r.low, r.high, r.close, r.volume)
    else:
        j = data.draw(st.integers(0, len(rows) - 1).filter(lambda j: j != i))
        rows[i] = Row(r.line, rows[j].ts, r.open, r.high, r.low, r.close, r.volume)
    report = check(rows, interval=H)
    assert not report.ok
    assert any(r.line in p.lines for p in report.problems), report.describe()


@settings(max_examples=30, deadline=None)
@given(closes)
def test_written_files_read_back_the_same(tmp_path_factory: pytest.TempPathFactory, cs: list[Decimal]) -> None:
    rows = _rows(cs)
    f = tmp_path_factory.mktemp("rt") / "X-Y_1h.csv"
    f.write_text(render_csv(rows))
    back, report = check_file(f)
    assert report.ok and [(r.ts, r.open, r.high, r.low, r.close) for r in back] == [
        (r.ts, r.open, r.high, r.low, r.close) for r in rows
    ]


# -- one pass, constant memory: long files and the backtest's single --data file --------------------


def test_scan_agrees_with_check_on_a_file(tmp_path: Path) -> None:
    import csv

    from cli_trading.market.datacheck import scan

    body = HEADER + (
        "2024-01-01T00:00:00Z,1,2,1,2,5\n"
        "2024-01-01T01:00:00Z,2,3,2,3,5\n"
        "2024-01-01T01:00:00Z,2,3,2,3,5\n"  # line 4 repeats line 3
        "2024-01-01T00:30:00Z,2,3,2,3,5\n"  # line 5 goes back
        "2024-01-01T04:00:00Z,2,3,2,0.5,5\n"  # line 6: close below low, and 2 bars missing
    )
    f = tmp_path / "X-Y_1h.csv"
    f.write_text(body)
    with f.open(newline="") as fh:
        streamed = scan(csv.DictReader(fh), interval=H)
    with pytest.raises(DataError) as info:
        check_file(f)
    want = [(p.kind, p.lines) for p in info.value.report.problems]
    assert [(p.kind, p.lines) for p in streamed.problems] == want
    assert ("duplicate", (3, 4)) in want and ("out_of_order", (3, 5)) in want and ("outside_range", (6,)) in want
    assert streamed.missing_bars == 2 and streamed.rows == 5


def test_stream_file_checks_before_the_first_bar_and_fills(tmp_path: Path) -> None:
    from cli_trading.backtest.data import load_series

    f = tmp_path / "SOL-USD_1h.csv"
    f.write_text(HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T03:00:00Z,2,3,2,3,5\n")
    series, iv = load_series(["SOL-USD"], f)
    assert [b.close for b in series["SOL-USD"]] == [Decimal(2), Decimal(3)] and iv["SOL-USD"] == H
    series, _ = load_series(["SOL-USD"], f, gaps="fill")
    assert [b.ts.hour for b in series["SOL-USD"]] == [0, 1, 2, 3]
    with pytest.raises(DataError, match="gaps refused"):
        load_series(["SOL-USD"], f, gaps="refuse")
    f.write_text(HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T01:00:00Z,1,2,1,-2,5\n")
    with pytest.raises(DataError, match="line 3"):
        load_series(["SOL-USD"], f)  # refused before any bar is streamed


def test_backtest_command_refuses_a_damaged_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli_trading.cli import app

    f = tmp_path / "SOL-USD_1h.csv"
    f.write_text(HEADER + "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T00:00:00Z,1,2,1,2,5\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["backtest", "--symbols", "SOL-USD", "--data", str(f), "--out", str(out), "--json"])
    assert res.exit_code == 2 and "line 2 and 3: timestamp 2024-01-01T00:00:00+00:00 twice" in res.output
    assert not (out / "report.html").exists()
