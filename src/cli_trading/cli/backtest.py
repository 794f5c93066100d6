"""`cli-trading backtest`: replay candles through the system's own pipeline and write a report
(docs/backtesting.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli_trading.config import ConfigError, Settings, load_settings
from cli_trading.market.datacheck import GapPolicy

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(backtest)


def _fail(msg: str) -> typer.Exit:
    err.print(f"[red]cli-trading backtest: {msg}[/red]")
    return typer.Exit(2)


@contextmanager
def _progress(total: int | None, enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr (bars done of the total, when known); off with --json."""
    if not enabled:
        yield None
        return
    cols = [TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TextColumn("bars"), TimeElapsedColumn()]
    with Progress(*cols, console=err, transient=True) as bar:
        task = bar.add_task("backtest", total=total)
        yield lambda n: bar.update(task, completed=n)


def backtest(
    config: Annotated[
        Path | None, typer.Option("--config", help="folder with strategies.yaml and risk.yaml (else the shipped ones)")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option("--symbols", help="comma-separated, e.g. BTC-USD,ETH-USD (default: SYMBOLS)")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="first bar, e.g. 2019-05-01 (UTC)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="stop before this time, e.g. 2019-08-01 (UTC)")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="a folder of <SYMBOL>_<timeframe>.csv[.gz] files, or one such file")
    ] = None,
    starting_cash: Annotated[str | None, typer.Option("--starting-cash", help="default: STARTING_CASH (10000)")] = None,
    gaps: Annotated[
        GapPolicy, typer.Option(help="missing bars in the data: allow (keep), fill or refuse (docs/data.md)")
    ] = GapPolicy.ALLOW,
    out_dir: Annotated[Path, typer.Option("--out", help="where trades.csv, equity.csv, report.html go")] = Path(
        "backtest-report"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON (no table, no progress)")] = False,
) -> None:
    """Backtest the strategies on historical candles with the risk rules, sizing, fees, slippage
    and daily halts the running system applies; write trades.csv, equity.csv, report.html."""
    from cli_trading.backtest import DataError, load_series, run
    from cli_trading.backtest.data import parse_date
    from cli_trading.backtest.html import MAX_MARKERS, write_html
    from cli_trading.backtest.report import CsvRecorder, summary_table, write_json

    try:
        settings = _settings(config, data)
        cash = Decimal(starting_cash) if starting_cash is not None else settings.starting_cash
        if not cash.is_finite() or cash <= 0:
            raise ValueError(f"--starting-cash must be a positive amount, got {starting_cash}")
        one_file = data is not None and data.is_file()  # then its name says the symbol
        default = [] if one_file else settings.symbol_list
        names = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else default
        series, intervals = load_series(
            names, settings.market_data_dir, start=parse_date(start), end=parse_date(end), gaps=gaps
        )
        lists = [b for b in series.values() if isinstance(b, list)]
        total = sum(len(b) for b in lists) if len(lists) == len(series) else None  # a streamed file: unknown
        with CsvRecorder(out_dir) as rec, _progress(total, not as_json) as progress:
            result = run(
                series,
                settings.config_file("strategies.yaml"),
                settings.config_file("risk.yaml"),
                settings=settings,
                starting_cash=cash,
                intervals=intervals,
                recorder=rec,
                progress=progress,
                keep_fills=MAX_MARKERS,  # the report marks that many; trades.csv gets them all
            )
    except (ConfigError, DataError, InvalidOperation) as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:  # unknown symbol, bad date, bad amount
        raise _fail(str(exc)) from None
    if result.metrics.bars == 0:
        raise _fail("no bars in the chosen period")
    doc = write_json(result, out_dir / "metrics.json")
    write_html(result, out_dir / "report.html", title=f"Backtest: {', '.join(result.symbols)}")
    files = {n: str(out_dir / n) for n in ("trades.csv", "equity.csv", "report.html", "metrics.json")}
    if as_json:
        out.print_json(json.dumps({**doc, "files": files}, default=str))
        return
    out.print(summary_table(result))
    out.print(f"report: [bold]{files['report.html']}[/bold]")
    out.print(f"trades: {files['trades.csv']}  equity: {files['equity.csv']}  metrics: {files['metrics.json']}")


def _settings(config: Path | None, data: Path | None) -> Settings:
    overrides: dict[str, object] = {}
    if config is not None:
        if not config.is_dir():
            raise ConfigError(f"--config {config}: not a folder")
        overrides["config_dir"] = config
    if data is not None:
        overrides["market_data_dir"] = data
    return load_settings(**overrides)
