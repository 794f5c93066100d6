"""`data download`, `data check`, `data import`: candle files for backtests, the optimizer and the
replay (docs/data.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli_trading.isotime import parse_iso
from cli_trading.market import download as dl
from cli_trading.market.bars import check_file, parse_timeframe
from cli_trading.market.ccxt_feed import from_ccxt_symbol
from cli_trading.market.datacheck import DataError, GapPolicy, Report

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
data_app = typer.Typer(no_args_is_help=True, help="Candle files: download from an exchange, check, import.")
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Gaps = Annotated[GapPolicy, typer.Option("--gaps", help="bars missing: keep them missing, fill them, or refuse")]


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]cli-trading data: {msg}[/red]")
    return typer.Exit(code)


def _since(value: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (2024-01-01 or 2024-01-01T12:00)") from None


def _point(urls: Any, base: str) -> Any:
    """Every URL of the exchange's API, with its scheme and host replaced by `base`."""
    if isinstance(urls, dict):
        return {k: _point(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        return base.rstrip("/") + urls[len(f"{parts.scheme}://{parts.netloc}") :]
    return urls


def make_exchange(name: str, api_url: str | None = None) -> Any:
    """A ccxt exchange for public market data only (no keys; Binance: spot markets only)."""
    import ccxt

    cls = getattr(ccxt, name, None)
    if name not in ccxt.exchanges or cls is None:
        raise _fail(f"unknown exchange {name!r}; ccxt knows e.g. binance, kraken, coinbase, bybit, okx")
    options = {"fetchCurrencies": False, "fetchMarkets": {"types": ["spot"]}} if name.startswith("binance") else {}
    ex = cls({"enableRateLimit": True, "options": options})
    if api_url:
        ex.urls["api"] = _point(ex.urls["api"], api_url)
    return ex


@data_app.command()
def download(
    symbol: Annotated[str, typer.Option(help="the exchange's market, e.g. BTC/USDT")],
    exchange: Annotated[str, typer.Option(help="a ccxt exchange id")] = "binance",
    timeframe: Annotated[str, typer.Option(help="candle length: 1m, 15m, 1h, 4h, 1d, …")] = "1h",
    since: Annotated[str | None, typer.Option(help="first candle (UTC date); not needed to continue a file")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="folder of candle files")] = Path("market-data"),
    api_url: Annotated[str | None, typer.Option(help="another address for the exchange's API (a simulator)")] = None,
    limit: Annotated[int, typer.Option(help="candles per request", min=1)] = 1000,
    json_: Json = False,
) -> None:
    """Download candles through ccxt into OUT/<SYMBOL>_<TIMEFRAME>.csv; run it again to continue."""
    try:
        parse_timeframe(timeframe)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    sym = symbol.replace("-", "/")
    path = dl.target_path(out_dir, sym, timeframe)
    if since is None and not path.exists():
        raise _fail(f"{path} does not exist yet: give --since (the first candle to download)")
    ex = make_exchange(exchange, api_url)
    if timeframe not in (getattr(ex, "timeframes", None) or {timeframe: timeframe}):
        raise _fail(f"{exchange} has no timeframe {timeframe!r}; it has {', '.join(ex.timeframes)}")
    try:
        result = _run_download(ex, sym, timeframe, _since(since) if since else datetime.now(UTC), path, limit)
    except DataError as exc:
        raise _fail(f"{path} is damaged; fix or delete it:\n{exc}") from None
    except Exception as exc:  # ccxt's errors: bad symbol, exchange down after the retries, …
        if type(exc).__module__.startswith("ccxt"):
            raise _fail(f"{exchange}: {type(exc).__name__}: {exc}", 1) from None
        raise
    _print_download(result, json_)


def _run_download(ex: Any, symbol: str, timeframe: str, since: datetime, path: Path, limit: int) -> dl.DownloadResult:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{symbol} {timeframe}", total=None)

        def show(p: dl.Progress) -> None:
            last = p.last.strftime("%Y-%m-%d %H:%M") if p.last else "…"
            bar.update(task, completed=p.held, total=p.total, description=f"{symbol} {timeframe} {last}")

        return dl.download(ex, symbol, timeframe, since, path, limit=limit, on_progress=show)


def _print_download(r: dl.DownloadResult, json_: bool) -> None:
    doc = {
        "path": str(r.path),
        "symbol": from_ccxt_symbol(r.symbol),
        "timeframe": r.timeframe,
        "before": r.before,
        "added": r.added,
        "candles": r.before + r.added,
        "requests": r.pages,
        "first": r.first.isoformat() if r.first else None,
        "last": r.last.isoformat() if r.last else None,
        "check": r.report.as_dict(),
    }
    if json_:
        out.print_json(json.dumps(doc))
        return
    t = Table(title=f"{doc['symbol']} {r.timeframe} → {r.path}")
    for k in ("candles", "added", "requests", "first", "last"):
        t.add_row(k, str(doc[k]))
    out.print(t)
    if r.report.problems or r.report.gaps:
        out.print(r.report.describe())


def _print_report(report: Report, json_: bool, extra: dict[str, Any] | None = None) -> None:
    if json_:
        out.print_json(json.dumps({**report.as_dict(), **(extra or {})}))
    else:
        out.print(report.describe())
        if report.ok:
            out.print("[green]ok[/green]")


@data_app.command("check")
def check_cmd(
    path: Annotated[Path, typer.Argument(help="a candle CSV file (.csv or .csv.gz)")],
    timeframe: Annotated[str | None, typer.Option(help="bar length, if the file name does not say it")] = None,
    gaps: Gaps = GapPolicy.ALLOW,
    json_: Json = False,
) -> None:
    """Check a candle file; exit 1 when it is unusable (the report names the lines)."""
    try:
        _, report = check_file(path, interval=parse_timeframe(timeframe) if timeframe else None, gaps=gaps)
    except DataError as exc:
        _print_report(exc.report, json_)
        raise typer.Exit(1) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _print_report(report, json_)


@data_app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(help="a CSV with ts,open,high,low,close,volume (ts ISO-8601 or ms)")],
    symbol: Annotated[str, typer.Option(help="the symbol to file it under, e.g. BTC-USD")],
    timeframe: Annotated[str, typer.Option(help="bar length: 1m, 1h, 1d, …")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder of candle files")] = Path("market-data"),
    gaps: Gaps = GapPolicy.REFUSE,
    json_: Json = False,
) -> None:
    """Check a CSV and, when it is sound, write it as OUT/<SYMBOL>_<TIMEFRAME>.csv (exit 1 if not)."""
    try:
        rows, report = check_file(source, interval=parse_timeframe(timeframe), gaps=gaps)
    except DataError as exc:
        _print_report(exc.report, json_)
        raise typer.Exit(1) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    target = Path(out_dir) / f"{symbol.replace('/', '-')}_{timeframe}.csv"
    dl.write_csv(target, rows)
    _print_report(report, json_, {"written": str(target), "candles": len(rows)})
    if not json_:
        out.print(f"wrote {len(rows)} candles to {target}")
