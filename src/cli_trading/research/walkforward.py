"""Walk-forward optimisation of one strategy's parameters on one symbol (docs/optimization.md):
what `cli-trading optimize` and the parameter-optimizer agent both run.

- `grid`: every combination of the search space is backtested once over the history (through
  the engine, spread over the cores); each window then selects among them on its train bars.
- `optuna`: for larger spaces, a seeded TPE sampler per window proposes sets, scored on that
  window's train bars only (so no window's choice saw its test bars); every set is backtested
  once over the history and reused by any window that asks for it again. Trials are asked and
  told in batches of `BATCH`, whatever the number of workers: the same seed gives the same
  answer on any machine.

The current parameters (those of the strategies file, or those given) always compete, and every
window measures them on the same bars as its choice; proposals must beat them out of sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cli_trading.research.runs import Runner, Study
from cli_trading.trading.optimize import (
    DRAWDOWN_WEIGHT,
    Params,
    Proposal,
    Trace,
    Window,
    WindowResult,
    candidates,
    check_names,
    default_grid,
    figures,
    key_of,
    proposals,
    select,
    summary,
    windows,
)
from cli_trading.trading.strategies import build_strategy

BATCH = 4
Progress = Callable[[int, int], None]  # (runs done, runs planned)


@dataclass(frozen=True)
class Axis:
    """One parameter's search range: a list of values, or low..high (with a step for a grid)."""

    name: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    integer: bool = False

    def grid(self) -> list[Any]:
        if self.values:
            return list(self.values)
        if self.step is None or self.low is None or self.high is None:
            raise ValueError(f"{self.name}: a range needs a step for a grid search (low:high:step), or use optuna")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        vals = [self.low + i * self.step for i in range(n)]
        return [int(round(v)) if self.integer else round(v, 10) for v in vals]

    def suggest(self, trial: Any) -> Any:
        if self.values:
            return trial.suggest_categorical(self.name, list(self.values))
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: neither values nor a range")
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_axis(text: str) -> Axis:
    """`fast=5,8,12` (values), `fast=5:50` (a range), `width=1.5:3:0.5` (a range with a step)."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ValueError(f"{text!r}: write name=v1,v2,… or name=low:high[:step]")
    try:
        if ":" in spec:
            parts = [_number(p) for p in spec.split(":")]
            if len(parts) not in (2, 3) or parts[0] > parts[1] or (len(parts) == 3 and parts[2] <= 0):
                raise ValueError
            integer = all(isinstance(p, int) for p in parts)
            return Axis(
                name, (), float(parts[0]), float(parts[1]), float(parts[2]) if len(parts) == 3 else None, integer
            )
        return Axis(name, tuple(_value(v.strip()) for v in spec.split(",") if v.strip()))
    except ValueError:
        raise ValueError(f"{text!r}: write name=v1,v2,… or name=low:high[:step] with low <= high") from None


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return _number(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Spec:
    strategy: str
    space: Mapping[str, Axis] = field(default_factory=dict)  # empty: the strategy's default grid
    method: Literal["grid", "optuna"] = "grid"
    trials: int = 40  # per window, optuna
    windows: int = 4
    train_ratio: float = 3.0
    anchored: bool = False
    seed: int = 0
    limit: int = 5
    drawdown_weight: float = DRAWDOWN_WEIGHT

    def axes(self) -> dict[str, Axis]:
        if self.space:
            return dict(self.space)
        return {k: Axis(k, tuple(v)) for k, v in default_grid(self.strategy).items()}


@dataclass
class SearchResult:
    spec: Spec
    symbol: str
    current: Params
    results: list[WindowResult]
    proposals: list[Proposal]
    evaluated: int  # distinct parameter sets backtested
    bars: int
    times: Sequence[int] = ()  # each bar's open time, epoch seconds
    seconds: float = 0.0

    def _dates(self, span: tuple[int, int]) -> list[str]:
        return [datetime.fromtimestamp(self.times[i], UTC).isoformat() for i in (span[0], span[1] - 1)]

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "strategy": s.strategy,
            "symbol": self.symbol,
            "method": s.method,
            "bars": self.bars,
            "evaluated": self.evaluated,
            "seconds": round(self.seconds, 3),
            "walkForward": {"windows": s.windows, "trainRatio": s.train_ratio, "anchored": s.anchored, "seed": s.seed},
            "current": self.current,
            "summary": summary(self.results),
            "windows": [
                {**r.as_dict(), "trainDates": self._dates(r.window.train), "testDates": self._dates(r.window.test)}
                for r in self.results
            ],
            "proposals": [p.as_dict() for p in self.proposals],
        }


def _complete(strategy: str, params: Mapping[str, Any]) -> Params:
    return dict(build_strategy(strategy, dict(params)).params.model_dump())


def optimize(
    study: Study,
    spec: Spec,
    *,
    current: Params | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    start_method: str | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> SearchResult:
    """Walk-forward optimisation of `spec.strategy` on the study's bars; see the module docstring.
    `current`: the parameters in force (default: the strategies file's). `stop`: polled while
    the backtests run; when it turns true the search ends with `runs.Stopped`."""
    started = time.perf_counter()
    axes = spec.axes()
    check_names(spec.strategy, {}, {a: [1] for a in axes})
    cur = _complete(spec.strategy, current) if current is not None else study.current(spec.strategy)
    ws = windows(len(study.bars), count=spec.windows, train_ratio=spec.train_ratio, anchored=spec.anchored)
    with Runner(study, spec.strategy, workers=workers, start_method=start_method, stop=stop) as runner:
        search = (_Grid if spec.method == "grid" else _Optuna)(runner, spec, axes, progress)
        cur_trace = search.prime(cur)
        if isinstance(cur_trace, str):
            raise ValueError(f"the current parameters cannot be backtested: {cur_trace}")
        results = [select(w, search.runs(w), (cur, cur_trace), drawdown_weight=spec.drawdown_weight) for w in ws]
        evaluated = len(search.cache)
    return SearchResult(
        spec,
        study.symbol,
        cur,
        results,
        proposals(results, cur, limit=spec.limit, drawdown_weight=spec.drawdown_weight),
        evaluated,
        len(study.bars),
        [int(b.ts.timestamp()) for b in study.bars],
        time.perf_counter() - started,
    )


class _Search:
    def __init__(self, runner: Runner, spec: Spec, axes: dict[str, Axis], planned: int, progress: Progress | None):
        self.runner, self.spec, self.axes = runner, spec, axes
        self.cache: dict[tuple[tuple[str, Any], ...], Trace | str] = {}
        self.done, self.planned, self.progress = 0, planned, progress

    def _tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, max(self.planned, self.done))

    def traces(self, sets: Sequence[Params], *, count: bool = False) -> list[Trace | str]:
        """Each set's trace, backtesting only those not seen before; `count`: each run is a step
        of the progress (else the caller counts)."""
        todo = list({key_of(p): p for p in sets if key_of(p) not in self.cache}.values())
        for p, t in zip(todo, self.runner.map(todo, self._tick if count else lambda: None), strict=True):
            self.cache[key_of(p)] = t
        return [self.cache[key_of(p)] for p in sets]

    def prime(self, current: Params) -> Trace | str:
        """The current set's trace (with whatever else can run alongside it)."""
        return self.traces([current], count=True)[0]

    def runs(self, window: Window) -> list[tuple[Params, Trace]]:
        raise NotImplementedError


class _Grid(_Search):
    def __init__(self, runner: Runner, spec: Spec, axes: dict[str, Axis], progress: Progress | None = None) -> None:
        self.sets = candidates(spec.strategy, {}, {k: a.grid() for k, a in axes.items()})
        if not self.sets:
            raise ValueError(f"no valid parameter set in the grid of {spec.strategy!r}")
        super().__init__(runner, spec, axes, len(self.sets) + 1, progress)
        self._all: list[tuple[Params, Trace]] | None = None

    def prime(self, current: Params) -> Trace | str:
        return self.traces([current, *self.sets], count=True)[0]  # one batch: every core busy

    def runs(self, window: Window) -> list[tuple[Params, Trace]]:
        if self._all is None:
            got = self.traces(self.sets, count=True)
            self._all = [(p, t) for p, t in zip(self.sets, got, strict=True) if not isinstance(t, str)]
        return self._all


class _Optuna(_Search):
    def __init__(self, runner: Runner, spec: Spec, axes: dict[str, Axis], progress: Progress | None = None) -> None:
        super().__init__(runner, spec, axes, spec.windows * spec.trials + 1, progress)

    def runs(self, window: Window) -> list[tuple[Params, Trace]]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.spec.seed + window.index)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        found: dict[tuple[tuple[str, Any], ...], tuple[Params, Trace]] = {}
        left = self.spec.trials
        while left > 0:
            trials = [study.ask() for _ in range(min(BATCH, left))]
            left -= len(trials)
            sets = [self._suggest(t) for t in trials]
            got = iter(self.traces([p for p in sets if p is not None]))
            for t, p in zip(trials, sets, strict=True):
                tr = next(got) if p is not None else None
                if p is None or tr is None or isinstance(tr, str):  # a set the strategy refuses
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                else:
                    found[key_of(p)] = (p, tr)
                    study.tell(t, figures(tr, *window.train).score(self.spec.drawdown_weight))
            self._tick(len(trials))
        return list(found.values())

    def _suggest(self, trial: Any) -> Params | None:
        try:
            return _complete(self.spec.strategy, {k: a.suggest(trial) for k, a in self.axes.items()})
        except ValueError:
            return None  # a combination the strategy refuses (fast >= slow, ...)
