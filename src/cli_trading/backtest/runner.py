"""`run`: a whole backtest — bars in, metrics, fills and chart series out."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from cli_trading.backtest.data import Step, timeline
from cli_trading.backtest.engine import Counters, Engine, Fill, HaltEvent, SimConfig
from cli_trading.backtest.metrics import Metrics, MetricsBook
from cli_trading.config import DEFAULTS_DIR, load_yaml
from cli_trading.market.bars import Bar
from cli_trading.trading.risk import RiskFile, RiskRules
from cli_trading.trading.strategy_config import StrategyFile, load_strategy_config


class Recorder(Protocol):
    """Receives a run's outputs as they happen (the CLI streams them to trades.csv/equity.csv)."""

    def on_fill(self, fill: Fill, trade_pnl: float | None) -> None: ...
    def on_bar(self, ts: datetime, equity: float, bh_equity: float, drawdown_pct: float) -> None: ...


class Point(NamedTuple):
    """One point of the chart (a named tuple: a run keeps thousands)."""

    ts: datetime
    equity: float
    buy_and_hold: float
    drawdown_pct: float
    closes: tuple[float | None, ...]  # per symbol, in `BacktestResult.symbols` order


_point = functools.partial(tuple.__new__, Point)  # a Point without its Python-level __new__


class Decimator:
    """At most `limit` points of a series of any length: every `stride`-th point, the stride
    doubling whenever the buffer fills (constant memory), and the last point. The caller counts
    the points it skips (`n += 1`: the common case costs no call)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.stride, self.n = max(limit, 2), 1, 0
        self.points: list[Point] = []

    def wants(self) -> bool:
        """Is the next point kept? (Then build it and `add` it; else count it in `n`.)"""
        return self.n % self.stride == 0

    def add(self, p: Point) -> None:
        self.points.append(p)
        if len(self.points) >= self.limit:
            self.points = self.points[::2]
            self.stride *= 2
        self.n += 1

    def series(self, last: Point | None) -> list[Point]:
        """The kept points and `last`, the final point, unless it is already the last kept."""
        if last is None or (self.points and self.points[-1].ts == last.ts):
            return list(self.points)
        return [*self.points, last]


class Thinned:
    """Every item, or with a `limit` at most about `limit` of them, evenly spread: every
    `stride`-th, the stride doubling whenever the list fills (constant memory)."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.stride, self.n = limit, 1, 0
        self.items: list[Fill] = []

    def extend(self, items: list[Fill]) -> None:
        if self.limit is None:
            self.items.extend(items)
            return
        for item in items:
            if self.n % self.stride == 0:
                self.items.append(item)
                if len(self.items) >= 2 * self.limit:
                    self.items = self.items[::2]
                    self.stride *= 2
            self.n += 1


@dataclass
class BacktestResult:
    """What a backtest produced. `metrics` is always complete; `fills` holds every fill unless
    the run was asked not to keep them; `chart` is the equity curve decimated to a bounded size."""

    symbols: list[str]
    metrics: Metrics
    fills: list[Fill]
    chart: list[Point]
    halts: list[HaltEvent]
    counters: Counters
    final_cash: Decimal
    positions: dict[str, Decimal]
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: metrics, activity and configuration."""
        c = self.counters
        return {
            "symbols": self.symbols,
            "metrics": self.metrics.as_dict(),
            "activity": {
                "steps": c.steps,
                "runs": c.runs,
                "holds": c.holds,
                "rejected": dict(sorted(c.rejected.items())),
                "halts": dict(sorted(c.halts.items())),
            },
            "finalCash": str(self.final_cash),
            "positions": {s: str(q) for s, q in self.positions.items() if q},
            "config": self.config,
        }


def _strategies(cfg: StrategyFile | str | Path | None) -> StrategyFile:
    if isinstance(cfg, StrategyFile):
        return cfg
    return load_strategy_config(cfg or DEFAULTS_DIR / "strategies.yaml")


def _rules(cfg: RiskRules | str | Path | None) -> RiskRules:
    if isinstance(cfg, RiskRules):
        return cfg
    return load_yaml(Path(cfg or DEFAULTS_DIR / "risk.yaml"), RiskFile).risk


class _BuyAndHold:
    """The starting cash split equally between the symbols, each bought at its first close."""

    def __init__(self, symbols: Sequence[str], cash: float) -> None:
        self.share = cash / max(len(symbols), 1)
        self.idle = cash  # not yet invested (a symbol whose history starts later)
        self.qty: dict[str, float] = {}
        self.symbols = len(symbols)
        self.complete = False  # every symbol bought: the fast path
        self.held: list[tuple[str, float]] = []

    def value(self, closes: Mapping[str, float]) -> float:
        if self.complete:
            value = 0.0
            for sym, units in self.held:
                value += units * closes[sym]
            return value
        total = self.idle
        for sym, px in closes.items():
            q = self.qty.get(sym)
            if q is None and px > 0:
                q = self.qty[sym] = self.share / px
                self.idle -= self.share
                total -= self.share
            total += (q or 0.0) * px
        self.complete = len(self.qty) == self.symbols
        self.held = list(self.qty.items())  # the same order as `qty`: the same sum
        return total


def run(
    bars_by_symbol: Mapping[str, Iterable[Bar]] | Iterable[Step],
    strategies_config: StrategyFile | str | Path | None = None,
    risk_config: RiskRules | str | Path | None = None,
    *,
    starting_cash: Decimal | str | int | None = None,
    settings: Any = None,
    symbols: Sequence[str] | None = None,
    intervals: Mapping[str, timedelta] | None = None,
    recorder: Recorder | None = None,
    keep_fills: bool | int = True,
    chart_points: int = 2000,
    progress: Callable[[int], None] | None = None,
    **knobs: Any,
) -> BacktestResult:
    """Backtest the strategies over the bars through the system's own pipeline (analysis, sizing,
    halt policy per market day, risk rules, paper fills with fees and slippage, ledger): the fills
    are those paper trading the same bars through `cli-trading up --step` gives. **This is the
    API for optimisation**: call it per parameter set and window, with `keep_fills=False`.

    - `bars_by_symbol`: {symbol: bars oldest first} (lists or streams), or ready-made steps
      (`backtest.data.timeline`); `intervals` gives bar lengths when the spacing of the first two
      bars would not (gaps).
    - `strategies_config`: a `StrategyFile` (e.g. `StrategyFile.model_validate({"strategies":
      [{"name": "trend", "params": {"fast": 8}}]})`), a strategies.yaml path, or None (the shipped one).
    - `risk_config`: `RiskRules`, a risk.yaml path, or None (the shipped one).
    - `starting_cash`, and `knobs` among risk_fraction, fee_bps, slippage_bps, daily_target_pct,
      daily_loss_limit_pct (Decimal or str): override `settings` (a `config.Settings`) or the
      defaults (10000, 0.02, 10, 5, 5, 3).
    - `keep_fills`: True keeps every fill in `fills`, False none, a number N at most about N,
      evenly spread over the run (memory stays bounded; a recorder still sees every fill).
    - `recorder`: receives every fill and every bar's equity as they happen; `progress(n)` is
      called with the number of steps done, every 4096 steps and at the end.

    Memory stays constant with the length of the history apart from `fills` (when kept) and the
    halt events; `chart` holds at most `chart_points` points. Pure computation: no I/O.
    """
    unknown = set(knobs) - set(SimConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown backtest option(s): {', '.join(sorted(unknown))}")
    overrides = {k: Decimal(str(v)) for k, v in knobs.items() if v is not None}
    if starting_cash is not None:
        overrides["starting_cash"] = Decimal(str(starting_cash))
    cfg = SimConfig.from_settings(settings, **overrides) if settings is not None else SimConfig(**overrides)
    if isinstance(bars_by_symbol, Mapping):
        names = list(bars_by_symbol)
        steps: Iterable[Step] = timeline(bars_by_symbol, intervals)
    else:
        names, steps = list(symbols or []), bars_by_symbol
    if not names:
        raise ValueError("run() needs symbols: pass {symbol: bars} or symbols=[...] with steps")
    engine = Engine(_strategies(strategies_config), _rules(risk_config), cfg, names)
    return _drive(engine, steps, names, cfg, recorder, keep_fills, chart_points, progress)


def _settle(engine: Engine, book: MetricsBook, recorder: Recorder | None, kept: Thinned | None) -> float:
    """The step's fills into the metrics, the recorder and `kept`; returns the cash after them."""
    ledger = engine.ledger
    for f in engine.fills:
        left = ledger.qty_of(f.symbol)
        pnl = book.fill(f.symbol, f.side, float(f.qty * f.price), float(f.fee), flat_after=not left)
        if recorder is not None:
            recorder.on_fill(f, pnl)
    if kept is not None:
        kept.extend(engine.fills)
    engine.fills.clear()
    return float(ledger.cash)


def _drive(
    engine: Engine,
    steps: Iterable[Step],
    names: list[str],
    cfg: SimConfig,
    recorder: Recorder | None,
    keep_fills: bool | int,
    chart_points: int,
    progress: Callable[[int], None] | None,
) -> BacktestResult:
    book = MetricsBook(float(cfg.starting_cash))
    bh = _BuyAndHold(names, float(cfg.starting_cash))
    chart = Decimator(chart_points)
    closes = engine.closes  # float closes, kept by the engine as it observes bars
    held: list[tuple[str, float]] = []  # open positions as floats, for the equity curve
    cash = float(cfg.starting_cash)
    kept = Thinned(keep_fills if keep_fills is not True else None)
    n = 0
    on_bar = recorder.on_bar if recorder is not None else None
    last: Point | None = None
    # bound once: every name below is used on every step
    step_once, fills, bh_of, book_bar = engine.step, engine.fills, bh.value, book.bar
    keep = kept if keep_fills is not False else None
    for step in steps:
        step_once(step)
        if fills:  # the engine's list, emptied by _settle
            cash = _settle(engine, book, recorder, keep)
            held = [(s, float(p.qty)) for s, p in engine.ledger.positions.items() if p.qty]
        equity = cash
        for sym, q in held:
            equity += q * closes[sym]
        at = step[-1].ts
        bh_value = bh_of(closes)
        dd = book_bar(at, equity, bh_value, bool(held))
        if chart.n % chart.stride:  # Decimator.wants, without the call
            chart.n += 1
        else:
            chart.add(_point((at, equity, bh_value, dd, tuple([closes.get(s) for s in names]))))
        if on_bar is not None:
            on_bar(at, equity, bh_value, dd)
        n += 1
        if progress is not None and not n & 4095:
            progress(n)
    if n:
        last = Point(at, equity, bh_value, dd, tuple([closes.get(s) for s in names]))
    if progress is not None:
        progress(n)
    led = engine.ledger
    return BacktestResult(
        symbols=names,
        metrics=book.result(),
        fills=kept.items,
        chart=chart.series(last),
        halts=list(engine.halt_events),
        counters=engine.counters,
        final_cash=led.cash,
        positions={s: p.qty for s, p in led.positions.items()},
        config={k: str(getattr(cfg, k)) for k in SimConfig.__dataclass_fields__},
    )
