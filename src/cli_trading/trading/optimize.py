"""Walk-forward parameter optimisation: the pure part (docs/optimization.md). No I/O, no engine.

The engine (`cli_trading.backtest.run`) runs each parameter set once over the history, as the
system would have traded it, and leaves a `Trace`: the equity after every bar and the round
trips it closed. Everything here works on traces:

- `windows` cuts the history into walk-forward windows: train on `train` bars, test on the
  next `test` bars, roll forward by `test` bars (or, anchored, keep the train start at 0);
- `figures` measures a trace over a slice of bars (its equity rebased at the slice's start);
- `select` picks, for one window, the parameter set with the best in-sample score and measures
  it, and the current set, out of sample on the window's test bars;
- `proposals` keeps the sets selected by some window that did better out of sample than the
  current set did on the same test bars — never one that did worse.

A run up to bar t depends only on bars up to t, so a trace's figures over a test slice are out
of sample for a selection made on the train slice before it. Floats are fine here: these
figures rank parameter sets, they never reach the ledger.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cli_trading.trading.strategies import build_strategy, params_model

DRAWDOWN_WEIGHT = 0.5
MIN_TEST_BARS = 24  # a day of hourly bars: fewer say nothing out of sample
DAY = 86_400
PERIODS_PER_YEAR = 365

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "trend": {"fast": [5, 8, 12, 20], "slow": [21, 26, 50], "min_spread_pct": [0.05, 0.2]},
    "mean_reversion": {"period": [14, 20, 30], "width": [1.5, 2.0, 2.5], "rsi_low": [25, 30], "rsi_high": [70, 75]},
}
Params = dict[str, Any]


def key_of(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent identity of a parameter set."""
    return tuple(sorted(params.items()))


# -- the search space ----------------------------------------------------------------------------


def default_grid(strategy_name: str) -> dict[str, list[Any]]:
    """The parameter grid the optimizer searches by default (a fresh copy)."""
    if strategy_name not in DEFAULT_GRIDS:
        raise ValueError(f"no default grid for strategy {strategy_name!r}; known: {', '.join(DEFAULT_GRIDS)}")
    return {k: list(v) for k, v in DEFAULT_GRIDS[strategy_name].items()}


def check_names(strategy_name: str, base: Mapping[str, Any], grid: Mapping[str, Any]) -> None:
    """ValueError naming any parameter the strategy does not have, or a grid axis with no value."""
    fields = params_model(strategy_name).model_fields
    unknown = sorted(k for k in {**base, **grid} if k not in fields)
    if unknown:
        raise ValueError(
            f"strategy {strategy_name!r} has no parameter {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    empty = sorted(k for k, v in grid.items() if not v)
    if empty:
        raise ValueError(f"grid has no values for {', '.join(empty)}")


def candidates(strategy_name: str, base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[Params]:
    """Every distinct valid combination of `grid` over `base`, complete and validated, in grid
    order; combinations the params model rejects (fast >= slow, ...) are skipped."""
    check_names(strategy_name, base, grid)
    seen: set[tuple[tuple[str, Any], ...]] = set()
    out: list[Params] = []
    for values in itertools.product(*grid.values()):
        try:
            strat = build_strategy(strategy_name, {**base, **dict(zip(grid, values, strict=True))})
        except ValueError:
            continue
        params = strat.params.model_dump()
        if key_of(params) not in seen:
            seen.add(key_of(params))
            out.append(params)
    return out


# -- walk-forward windows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    index: int
    train: tuple[int, int]  # bar indexes [start, end)
    test: tuple[int, int]


def windows(n_bars: int, *, count: int = 4, train_ratio: float = 3.0, anchored: bool = False) -> list[Window]:
    """`count` walk-forward windows over `n_bars` bars: each tests on `test` bars right after
    `train` = train_ratio x test bars, the tests back to back up to the last bar (the first
    window's train slice takes what the rounding leaves)."""
    if count < 1 or train_ratio <= 0:
        raise ValueError(f"need at least one window and a positive train ratio (got {count}, {train_ratio})")
    test = int(n_bars / (count + train_ratio))
    train = n_bars - count * test
    if test < MIN_TEST_BARS:
        raise ValueError(
            f"{n_bars} bars are too few for {count} walk-forward windows: each would test on {test} bars"
            f" (at least {MIN_TEST_BARS}); give more history or fewer windows"
        )
    out = []
    for i in range(count):
        test_start = train + i * test
        out.append(Window(i + 1, (0 if anchored else i * test, test_start), (test_start, test_start + test)))
    return out


# -- measuring a run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """What one engine run over the history leaves for the optimizer."""

    start_equity: float
    ts: Sequence[int]  # each bar's time, epoch seconds (the step's last bar open time)
    equity: Sequence[float]  # equity after each bar
    trades: Sequence[tuple[int, float]] = ()  # (bar index, PnL) of each round trip closed, in order
    fills: Sequence[int] = ()  # bar index of each fill


@dataclass(frozen=True)
class Figures:
    """A parameter set's results over a slice of bars (percentages in %)."""

    bars: int
    return_pct: float
    max_drawdown_pct: float
    sharpe: float  # daily returns, annualised with 365 periods, risk-free rate 0
    trades: int  # round trips closed in the slice
    win_rate_pct: float
    fills: int

    def score(self, drawdown_weight: float = DRAWDOWN_WEIGHT) -> float:
        """Return minus a drawdown penalty, both in %: the higher, the better."""
        return self.return_pct - drawdown_weight * self.max_drawdown_pct

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": self.score()}


def _sharpe(returns: Sequence[float]) -> float:
    if len(returns) < 2:
        return 0.0
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return mean / math.sqrt(var) * math.sqrt(PERIODS_PER_YEAR) if var > 0 else 0.0


def _count(items: Sequence[int], start: int, end: int) -> int:
    return bisect.bisect_left(items, end) - bisect.bisect_left(items, start)


def figures(trace: Trace, start: int, end: int) -> Figures:
    """`trace` over bars [start, end): the return from the equity just before the slice; daily
    returns from the equity at each UTC day's last bar."""
    end = min(end, len(trace.equity))
    ts, equity = trace.ts, trace.equity
    base = equity[start - 1] if start > 0 else trace.start_equity
    eq = peak = day_close = base
    worst, returns = 0.0, []
    day = ts[start] // DAY if start < end else 0
    for i in range(start, end):
        if ts[i] // DAY != day:
            returns.append(eq / day_close - 1 if day_close else 0.0)  # eq: the previous bar's, the day's last
            day_close, day = eq, ts[i] // DAY
        eq = equity[i]
        if eq > peak:
            peak = eq
        elif peak > 0 and (peak - eq) / peak * 100 > worst:
            worst = (peak - eq) / peak * 100
    if end > start:
        returns.append(eq / day_close - 1 if day_close else 0.0)
    closed = [pnl for i, pnl in trace.trades if start <= i < end]
    wins = sum(p > 0 for p in closed)
    return Figures(
        bars=max(end - start, 0),
        return_pct=(eq / base - 1) * 100 if base else 0.0,
        max_drawdown_pct=worst,
        sharpe=_sharpe(returns),
        trades=len(closed),
        win_rate_pct=wins / len(closed) * 100 if closed else 0.0,
        fills=_count(trace.fills, start, end),
    )


def combine(parts: Sequence[Figures]) -> Figures:
    """Several slices' figures as one: returns compounded, the worst drawdown, trades summed,
    Sharpe the bar-weighted mean of the slices'."""
    if not parts:
        return Figures(0, 0.0, 0.0, 0.0, 0, 0.0, 0)
    growth = math.prod(1 + f.return_pct / 100 for f in parts)
    trades = sum(f.trades for f in parts)
    bars = sum(f.bars for f in parts)
    return Figures(
        bars=bars,
        return_pct=(growth - 1) * 100,
        max_drawdown_pct=max(f.max_drawdown_pct for f in parts),
        sharpe=sum(f.sharpe * f.bars for f in parts) / bars if bars else 0.0,
        trades=trades,
        win_rate_pct=sum(f.win_rate_pct * f.trades for f in parts) / trades if trades else 0.0,
        fills=sum(f.fills for f in parts),
    )


# -- selection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResult:
    window: Window
    params: Params  # the set with the best in-sample score
    in_sample: Figures
    out_of_sample: Figures
    current_in_sample: Figures
    current_out_of_sample: Figures
    evaluated: int  # parameter sets compared on this window

    def as_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "window": w.index,
            "train": list(w.train),
            "test": list(w.test),
            "params": self.params,
            "evaluated": self.evaluated,
            "inSample": self.in_sample.as_dict(),
            "outOfSample": self.out_of_sample.as_dict(),
            "current": {
                "inSample": self.current_in_sample.as_dict(),
                "outOfSample": self.current_out_of_sample.as_dict(),
            },
        }


def select(
    window: Window,
    runs: Sequence[tuple[Params, Trace]],
    current: tuple[Params, Trace],
    *,
    drawdown_weight: float = DRAWDOWN_WEIGHT,
) -> WindowResult:
    """The best in-sample set of `runs` (the current set competes too; on a tie the current set
    stays, then the earlier run wins) and its figures, and the current set's, on both slices."""
    train, test = window.train, window.test
    cur_is = figures(current[1], *train)
    best, best_is, best_trace = current[0], cur_is, current[1]
    for params, trace in runs:
        fig = figures(trace, *train)
        if fig.score(drawdown_weight) > best_is.score(drawdown_weight):
            best, best_is, best_trace = params, fig, trace
    return WindowResult(
        window,
        best,
        best_is,
        figures(best_trace, *test),
        cur_is,
        figures(current[1], *test),
        len(runs),
    )


@dataclass(frozen=True)
class Proposal:
    params: Params
    in_sample: Figures  # over the train slices of the windows that selected it
    out_of_sample: Figures  # over the test slices right after them
    current_out_of_sample: Figures  # the current set over the same test slices
    windows: tuple[int, ...] = field(default=())

    @property
    def score(self) -> float:
        return self.out_of_sample.score()

    def as_dict(self) -> dict[str, Any]:
        """The opt.results proposal: `params`, `score` (out of sample), the figures."""
        return {
            "params": self.params,
            "score": round(self.score, 6),
            "windows": list(self.windows),
            "inSample": self.in_sample.as_dict(),
            "outOfSample": self.out_of_sample.as_dict(),
            "currentOutOfSample": self.current_out_of_sample.as_dict(),
        }


def proposals(
    results: Sequence[WindowResult], current: Params, *, limit: int = 5, drawdown_weight: float = DRAWDOWN_WEIGHT
) -> list[Proposal]:
    """The sets some window selected, other than the current one, whose out-of-sample score
    over the windows that selected them beats the current set's over the same test slices; the
    most recently selected first. A set that did worse out of sample is never proposed."""
    chosen: dict[tuple[tuple[str, Any], ...], list[WindowResult]] = {}
    for r in sorted(results, key=lambda r: -r.window.index):
        if key_of(r.params) != key_of(current):
            chosen.setdefault(key_of(r.params), []).append(r)
    out = []
    for rs in chosen.values():
        oos = combine([r.out_of_sample for r in rs])
        cur = combine([r.current_out_of_sample for r in rs])
        if oos.score(drawdown_weight) > cur.score(drawdown_weight):
            ins = combine([r.in_sample for r in rs])
            out.append(Proposal(rs[0].params, ins, oos, cur, tuple(sorted(r.window.index for r in rs))))
    return out[:limit]


def summary(results: Sequence[WindowResult]) -> dict[str, Any]:
    """The walk-forward as a whole: the selected sets chained over the test slices, against the
    current set over the same slices; the in-sample figures for comparison."""
    return {
        "windows": len(results),
        "inSample": combine([r.in_sample for r in results]).as_dict(),
        "outOfSample": combine([r.out_of_sample for r in results]).as_dict(),
        "currentOutOfSample": combine([r.current_out_of_sample for r in results]).as_dict(),
    }
