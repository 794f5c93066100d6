"""One parameter set through the backtest engine, in this process or spread over a process pool.

A `Study` is what every run shares: the bars of one symbol, the strategies file (the strategy
being optimised gets each candidate's parameters, the others keep theirs), the risk rules and
the simulation knobs. `trace(study, strategy, params)` runs `cli_trading.backtest.run` — the
agents' own pipeline — and keeps what the optimizer measures (`trading.optimize.Trace`).

`Runner` evaluates many sets: in this process (`workers=1`), or in a pool of worker processes,
each given the study once when it starts. Results come back in the order asked, whatever the
order the workers finish in, so a search gives the same answer with any number of workers."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.backtest import Fill
from cli_trading.backtest import run as backtest_run
from cli_trading.market.bars import Bar
from cli_trading.trading.optimize import Params, Trace
from cli_trading.trading.risk import RiskRules
from cli_trading.trading.strategy_config import StrategyFile


@dataclass
class Study:
    symbol: str
    bars: Sequence[Bar]
    strategies: dict[str, Any]  # the strategies file as data (a StrategyFile dump, by alias)
    rules: RiskRules
    knobs: dict[str, Decimal] = field(default_factory=dict)  # starting_cash, fee_bps, ... (SimConfig)
    sys_path: list[str] = field(default_factory=list)  # where strategies of your own are imported from

    @classmethod
    def of(
        cls, symbol: str, bars: Sequence[Bar], strategies: StrategyFile, rules: RiskRules, **knobs: Decimal
    ) -> Study:
        doc = strategies.model_dump(by_alias=True, exclude_none=True)
        return cls(symbol, list(bars), doc, rules, dict(knobs), [p for p in sys.path if p])

    def current(self, strategy: str) -> Params:
        """The parameters the strategies file gives `strategy` (complete, defaults filled in);
        ValueError when it does not run on the study's symbol."""
        cfg = self.config(strategy, None)
        models = cfg.for_symbol(self.symbol)
        if strategy not in models:
            names = ", ".join(models) or "none"
            raise ValueError(f"strategy {strategy!r} does not run on {self.symbol} (strategies there: {names})")
        return dict(models[strategy].params.model_dump())

    def config(self, strategy: str, params: Params | None) -> StrategyFile:
        """The strategies file with `strategy`'s parameters replaced by `params` (None: as is)."""
        doc = dict(self.strategies)
        if params is not None:
            doc["strategies"] = [
                {**e, "params": dict(params)} if e["name"] == strategy else e for e in self.strategies["strategies"]
            ]
        return StrategyFile.model_validate(doc)


class _Recorder:
    """Keeps the equity after each bar and the round trips closed (the engine's Recorder)."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.equity: list[float] = []
        self.trades: list[tuple[int, float]] = []
        self.fills: list[int] = []

    def on_fill(self, fill: Fill, trade_pnl: float | None) -> None:
        i = len(self.ts)  # the fill belongs to the bar being recorded next
        self.fills.append(i)
        if trade_pnl is not None:
            self.trades.append((i, trade_pnl))

    def on_bar(self, ts: datetime, equity: float, bh_equity: float, drawdown_pct: float) -> None:
        self.ts.append(int(ts.timestamp()))
        self.equity.append(equity)


def trace(study: Study, strategy: str, params: Params | None) -> Trace:
    """Backtest the study's bars with `strategy` set to `params` (None: the file's own)."""
    rec = _Recorder()
    knobs: dict[str, Any] = dict(study.knobs)
    cash = knobs.pop("starting_cash", Decimal("10000"))
    backtest_run(
        {study.symbol: study.bars},
        study.config(strategy, params),
        study.rules,
        starting_cash=cash,
        recorder=rec,
        keep_fills=False,
        chart_points=2,
        **knobs,
    )
    return Trace(float(cash), rec.ts, rec.equity, rec.trades, rec.fills)


# -- worker processes -----------------------------------------------------------------------------

_STUDY: Study | None = None


def _init(study: Study) -> None:
    global _STUDY
    _STUDY = study
    for p in reversed(study.sys_path):
        if p not in sys.path:
            sys.path.insert(0, p)


def _evaluate(strategy: str, params: Params | None, study: Study | None = None) -> Trace | str:
    study = study or _STUDY
    if study is None:
        raise RuntimeError("worker started without its study")
    try:
        return trace(study, strategy, params)
    except ValueError as exc:  # parameters the strategy refuses: the search skips them
        return str(exc)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Runner:
    """Evaluates parameter sets of one study: `map` gives a Trace, or the reason a set was
    refused, per set in the order given. Use as a context manager (it owns the pool)."""

    def __init__(
        self,
        study: Study,
        strategy: str,
        *,
        workers: int | None = None,
        start_method: str | None = None,
        stop: Callable[[], bool] = lambda: False,
    ):
        self.study, self.strategy = study, strategy
        self.workers = max(1, workers or default_workers())
        self.start_method, self.stop = start_method, stop
        self._pool: Executor | None = None

    def __enter__(self) -> Runner:
        if self.workers > 1:
            # fork is the cheapest start (the workers inherit the study and the imports) but is
            # only safe while this process runs no other thread: an agent (event loop, threads)
            # gets forkserver, whose server has the engine imported once for all its workers
            method = self.start_method or ("fork" if threading.active_count() == 1 else "forkserver")
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init, initargs=(self.study,))
            self._pool.submit(int).result()  # start the workers now, before any other thread appears
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def map(self, sets: Sequence[Params | None], on_done: Callable[[], None] = lambda: None) -> list[Trace | str]:
        """Traces of `sets` (None: the strategies file's own parameters), in the order given;
        `on_done` is called as each finishes (from a pool thread when there is a pool). Raises
        Stopped soon after `stop()` turns true (an agent shutting down)."""
        if self._pool is None:
            out: list[Trace | str] = []
            for params in sets:
                self._check()
                out.append(_evaluate(self.strategy, params, self.study))
                on_done()
            return out
        futures = [self._pool.submit(_evaluate, self.strategy, p) for p in sets]
        for f in futures:
            f.add_done_callback(lambda _: on_done())
        results = []
        for f in futures:
            while True:
                self._check()
                try:
                    results.append(f.result(timeout=0.25))
                    break
                except FutureTimeout:
                    continue
        return results

    def _check(self) -> None:
        if self.stop():
            raise Stopped("the search was stopped")


class Stopped(Exception):
    """The search was asked to stop before it ended."""
