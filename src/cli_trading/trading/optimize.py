"""Parameter search for the parameter optimizer. Pure and synchronous.

`backtest` runs a long/flat simulation that calls the strategy's own `decide` on a rolling window
of bars (never a re-implementation of its logic); `grid_search` backtests every combination of a
parameter grid and ranks them by a score that penalises drawdown.

Simulation: after each bar closes the strategy sees the last `window` bars; a buy at or above
`min_confidence` while flat goes all-in at that close, a sell while long exits at that close;
every fill pays `fee_bps`. An open position is closed at the last bar. Floats are fine here: the
results rank parameter sets, they never reach the ledger.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cli_trading.trading.strategies import PriceBar, Signal, Strategy, build_strategy, params_model

WINDOW = 100

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "trend": {"fast": [5, 8, 12, 20], "slow": [21, 26, 50], "min_spread_pct": [0.05, 0.2]},
    "mean_reversion": {"period": [14, 20, 30], "width": [1.5, 2.0, 2.5], "rsi_low": [25, 30], "rsi_high": [70, 75]},
}


@dataclass(frozen=True)
class BacktestResult:
    return_pct: float
    trades: int  # round trips (buy then sell), including one closed at the last bar
    max_drawdown_pct: float  # largest fall of marked equity from its peak, in %
    win_rate: float  # share of round trips that made money after fees, 0..1

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Any]  # the complete, validated parameter set
    result: BacktestResult
    score: float


@dataclass(frozen=True, slots=True)
class _Px:
    """A bar reduced to the floats a strategy reads: cheap to convert again inside `decide`."""

    close: float
    high: float
    low: float


def _prices(bars: Sequence[PriceBar]) -> list[_Px]:
    return [_Px(float(b.close), float(b.high), float(b.low)) for b in bars]


class _Book:
    """A long/flat account starting at equity 1.0, all-in on each entry."""

    def __init__(self, fee: float) -> None:
        self.fee = fee
        self.cash = 1.0
        self.entry: float | None = None  # cost per unit including the fee, while long
        self.trades = self.wins = 0
        self.peak, self.max_dd = 1.0, 0.0

    def act(self, side: str | None, price: float) -> None:
        if side == "buy" and self.entry is None and price > 0:
            self.entry = price * (1 + self.fee)
        elif side == "sell" and self.entry is not None:
            self.exit(price)

    def exit(self, price: float) -> None:
        if self.entry is None:
            return
        gain = price * (1 - self.fee) / self.entry
        self.cash *= gain
        self.trades += 1
        self.wins += gain > 1
        self.entry = None

    def mark(self, price: float) -> None:
        equity = self.cash if self.entry is None else self.cash * price * (1 - self.fee) / self.entry
        self.peak = max(self.peak, equity)
        self.max_dd = max(self.max_dd, (self.peak - equity) / self.peak * 100)

    def result(self) -> BacktestResult:
        return BacktestResult((self.cash - 1) * 100, self.trades, self.max_dd, self.wins / max(self.trades, 1))


def _side(sig: Signal, min_confidence: float) -> str | None:
    return sig.side if sig.confidence >= min_confidence else None


def _run(strategy: Strategy, px: Sequence[_Px], fee_bps: float, min_confidence: float, window: int) -> BacktestResult:
    book = _Book(fee_bps / 10_000)
    size = max(window, strategy.lookback)
    for i in range(max(strategy.lookback - 1, 0), len(px)):
        sig = strategy.decide(px[max(0, i + 1 - size) : i + 1])
        book.act(_side(sig, min_confidence), px[i].close)
        book.mark(px[i].close)
    if book.entry is not None:
        book.exit(px[-1].close)
        book.mark(px[-1].close)
    return book.result()


def _check_sim(fee_bps: float, window: int) -> None:
    if fee_bps < 0:
        raise ValueError(f"fee_bps must not be negative, got {fee_bps}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")


def backtest(
    strategy: Strategy,
    bars: Sequence[PriceBar],
    *,
    fee_bps: float = 10.0,
    min_confidence: float = 0.55,
    window: int = WINDOW,
) -> BacktestResult:
    """Long/flat simulation of `strategy` over `bars` (oldest first); see the module docstring.
    `window` bounds the bars each decision sees (at least the strategy's lookback)."""
    _check_sim(fee_bps, window)
    return _run(strategy, _prices(bars), fee_bps, min_confidence, window)


def score(result: BacktestResult, *, drawdown_weight: float = 0.5) -> float:
    """Return minus a drawdown penalty, both in %: the higher, the better."""
    return result.return_pct - drawdown_weight * result.max_drawdown_pct


def default_grid(strategy_name: str) -> dict[str, list[Any]]:
    """The parameter grid the optimizer searches by default (a fresh copy)."""
    if strategy_name not in DEFAULT_GRIDS:
        raise ValueError(f"no default grid for strategy {strategy_name!r}; known: {', '.join(DEFAULT_GRIDS)}")
    return {k: list(v) for k, v in DEFAULT_GRIDS[strategy_name].items()}


def _check_grid(strategy_name: str, base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> None:
    fields = params_model(strategy_name).model_fields
    unknown = sorted(k for k in {**base, **grid} if k not in fields)
    if unknown:
        raise ValueError(
            f"strategy {strategy_name!r} has no parameter {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    empty = sorted(k for k, v in grid.items() if not v)
    if empty:
        raise ValueError(f"grid has no values for {', '.join(empty)}")


def candidates(strategy_name: str, base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[Strategy]:
    """One strategy per distinct valid combination of `grid` over `base`; combinations the params
    model rejects (fast >= slow, ...) are skipped, unknown parameter names are a ValueError."""
    _check_grid(strategy_name, base, grid)
    seen: set[tuple[tuple[str, Any], ...]] = set()
    out: list[Strategy] = []
    for values in itertools.product(*grid.values()):
        try:
            strat = build_strategy(strategy_name, {**base, **dict(zip(grid, values, strict=True))})
        except ValueError:
            continue
        key = tuple(sorted(strat.params.model_dump().items()))
        if key not in seen:
            seen.add(key)
            out.append(strat)
    return out


def grid_search(
    strategy_name: str,
    base_params: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    bars: Sequence[PriceBar],
    *,
    fee_bps: float = 10.0,
    min_confidence: float = 0.55,
    drawdown_weight: float = 0.5,
    window: int = WINDOW,
) -> list[Proposal]:
    """Backtest every valid combination of `grid` over `base_params`; proposals best score first
    (ties: fewer drawdown first, then grid order)."""
    _check_sim(fee_bps, window)
    strategies = candidates(strategy_name, base_params, grid)
    px = _prices(bars)
    proposals = []
    for strat in strategies:
        res = _run(strat, px, fee_bps, min_confidence, window)
        proposals.append(Proposal(strat.params.model_dump(), res, score(res, drawdown_weight=drawdown_weight)))
    return sorted(proposals, key=lambda p: (-p.score, p.result.max_drawdown_pct))
