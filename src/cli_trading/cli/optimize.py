"""`cli-trading optimize`: walk-forward optimisation of a strategy's parameters from the command
line — the same search the parameter-optimizer agent runs (docs/optimization.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli_trading.market.datacheck import GapPolicy
from cli_trading.research.walkforward import SearchResult

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
Method = Literal["grid", "optuna"]


def register(app: typer.Typer) -> None:
    app.command()(optimize)


def _fail(msg: str) -> typer.Exit:
    err.print(f"[red]cli-trading optimize: {msg}[/red]")
    return typer.Exit(2)


def optimize(
    strategy: Annotated[str, typer.Option(help="the strategy whose parameters are searched")] = "trend",
    symbol: Annotated[str, typer.Option(help="the symbol backtested")] = "BTC-USD",
    data: Annotated[Path | None, typer.Option(help="a folder of candle files or one CSV (default: shipped)")] = None,
    config: Annotated[Path | None, typer.Option(help="folder with strategies.yaml and risk.yaml")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="first bar (UTC date)")] = None,
    to: Annotated[str | None, typer.Option(help="end, exclusive (UTC date)")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="name=v1,v2,… or name=low:high[:step]; repeatable")
    ] = None,
    method: Annotated[str, typer.Option(help="grid: every combination; optuna: a seeded TPE sampler")] = "grid",
    trials: Annotated[int, typer.Option(help="optuna: parameter sets tried per window", min=1)] = 40,
    windows: Annotated[int, typer.Option(help="walk-forward windows", min=1)] = 4,
    train_ratio: Annotated[float, typer.Option(help="train bars per test bar in a window", min=0.1)] = 3.0,
    anchored: Annotated[bool, typer.Option(help="every window trains from the first bar")] = False,
    seed: Annotated[int, typer.Option(help="optuna's seed: the same seed, the same answer")] = 0,
    workers: Annotated[int | None, typer.Option(help="processes (default: every core)", min=1)] = None,
    gaps: Annotated[GapPolicy, typer.Option(help="missing bars in the data: allow, fill or refuse")] = GapPolicy.ALLOW,
    json_: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Walk-forward optimisation: per window, the best parameter set on the train bars, measured
    on the next bars; proposals are the sets that beat the current ones out of sample."""
    from cli_trading.research.walkforward import Spec, parse_axis

    if method not in ("grid", "optuna"):
        raise _fail(f"--method must be grid or optuna, not {method!r}")
    try:
        axes = {a.name: a for a in (parse_axis(p) for p in param or [])}
        spec = Spec(strategy, axes, method, trials, windows, train_ratio, anchored, seed)  # type: ignore[arg-type]  # method checked above
        study = _study(symbol, data, config, from_, to, gaps)
        outcome = _run(study, spec, workers)
    except ValueError as exc:  # bad option, unknown symbol or strategy, damaged data, too few bars
        raise _fail(str(exc)) from None
    if json_:
        out.print_json(json.dumps(outcome.as_dict(), default=str))
    else:
        _print(outcome)


def _study(
    symbol: str, data: Path | None, config: Path | None, start: str | None, end: str | None, gaps: GapPolicy
) -> Any:
    from cli_trading.backtest import SimConfig
    from cli_trading.backtest.data import load_series, parse_date
    from cli_trading.config import ConfigError, load_settings, load_yaml
    from cli_trading.research.runs import Study
    from cli_trading.trading.risk import RiskFile
    from cli_trading.trading.strategy_config import load_strategy_config

    try:
        settings = load_settings(**({"config_dir": config} if config else {}))
        strategies = load_strategy_config(settings.config_file("strategies.yaml"))
        rules = load_yaml(settings.config_file("risk.yaml"), RiskFile).risk
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    series, _ = load_series([symbol], data, start=parse_date(start), end=parse_date(end), gaps=gaps)
    (sym, bars), *_ = series.items()
    return Study.of(sym, list(bars), strategies, rules, **asdict(SimConfig.from_settings(settings)))


def _run(study: Any, spec: Any, workers: int | None) -> SearchResult:
    from cli_trading.research.walkforward import optimize as run_optimize

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # no refresh thread: the worker processes are forked from a process with a single thread
    with Progress(*columns, console=err, transient=True, auto_refresh=False) as bar:
        task = bar.add_task(f"{spec.strategy} on {study.symbol}: backtests", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            bar.refresh()

        return run_optimize(study, spec, workers=workers, progress=show)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _changed(params: dict[str, Any], current: dict[str, Any]) -> str:
    diff = {k: v for k, v in params.items() if current.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) or "(current)"


def _fig(d: dict[str, Any]) -> str:
    return f"{d['return_pct']:+.2f}% dd {d['max_drawdown_pct']:.2f}% ({d['score']:+.2f})"


def _print(o: SearchResult) -> None:
    doc = o.as_dict()
    cur = o.current
    t = Table(title=f"walk-forward: {o.spec.strategy} on {o.symbol}, {o.bars} bars, {o.evaluated} parameter sets")
    for col in ("window", "train", "test", "chosen", "in sample", "out of sample", "current, out of sample"):
        t.add_column(col)
    ts = o.times
    for r in o.results:
        w = r.window
        t.add_row(
            str(w.index),
            f"{_day(ts[w.train[0]])} → {_day(ts[w.train[1] - 1])}",
            f"{_day(ts[w.test[0]])} → {_day(ts[w.test[1] - 1])}",
            _changed(r.params, cur),
            _fig(r.in_sample.as_dict()),
            _fig(r.out_of_sample.as_dict()),
            _fig(r.current_out_of_sample.as_dict()),
        )
    s = doc["summary"]
    t.add_section()
    t.add_row("all", "", "", "", _fig(s["inSample"]), _fig(s["outOfSample"]), _fig(s["currentOutOfSample"]))
    out.print(t)
    out.print("return, max drawdown (score = return − 0.5 × drawdown); current: " + _changed(cur, {}))
    if not o.proposals:
        out.print("[yellow]no parameter set did better out of sample than the current one: nothing to propose[/yellow]")
        return
    p = Table(title="proposals (each beat the current set out of sample on the windows that chose it)")
    for col in ("params", "windows", "out of sample", "current, same bars", "trades"):
        p.add_column(col)
    for prop in o.proposals:
        p.add_row(
            _changed(prop.params, cur),
            ",".join(map(str, prop.windows)),
            _fig(prop.out_of_sample.as_dict()),
            _fig(prop.current_out_of_sample.as_dict()),
            str(prop.out_of_sample.trades),
        )
    out.print(p)
