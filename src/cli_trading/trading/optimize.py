"""Parameter search for the parameter optimizer: a long/flat backtest that reuses the live
strategies' `decide` (never a re-implementation), and a grid search over their parameters."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cli_trading.trading.strategies import build_strategy

WINDOW = 100


@dataclass(frozen=True, slots=True)
class BacktestResult:
    return_pct: float
    trades: int
    max_drawdown_pct: float
    win_rate: float


@dataclass(frozen=True, slots=True)
class Proposal:
    params: dict[str, Any]
    result: BacktestResult
    score: float


def backtest(
    strategy: Any, bars: Sequence[Any], *, fee_bps: float = 10.0, min_confidence: float = 0.55
) -> BacktestResult:
    equity, peak, max_dd = 1.0, 1.0, 0.0
    entry: float | None = None
    trades = wins = 0
    fee = fee_bps / 10_000
    for i in range(1, len(bars)):
        sig = strategy.decide(bars[max(0, i - WINDOW) : i])
        price = float(bars[i - 1].close)
        if entry is None and sig.side == "buy" and sig.confidence >= min_confidence:
            entry = price * (1 + fee)
        elif entry is not None and sig.side == "sell" and sig.confidence >= min_confidence:
            gain = price * (1 - fee) / entry
            equity *= gain
            trades, wins, entry = trades + 1, wins + (gain > 1), None
        mark = equity * (float(bars[i].close) / entry if entry else 1.0)
        peak = max(peak, mark)
        max_dd = max(max_dd, (peak - mark) / peak * 100)
    if entry is not None:
        equity *= float(bars[-1].close) * (1 - fee) / entry
        trades, wins = trades + 1, wins + (float(bars[-1].close) * (1 - fee) > entry)
    return BacktestResult((equity - 1) * 100, trades, max_dd, wins / trades if trades else 0.0)


def default_grid(strategy: str) -> dict[str, list[Any]]:
    if strategy == "trend":
        return {"fast": [5, 8, 12, 20], "slow": [21, 26, 50], "min_spread_pct": [0.05, 0.2]}
    if strategy == "mean_reversion":
        return {"period": [14, 20, 30], "width": [1.5, 2.0, 2.5], "rsi_low": [25, 30], "rsi_high": [70, 75]}
    raise ValueError(f"no grid for strategy {strategy!r}")


def grid_search(
    strategy: str,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    bars: Sequence[Any],
    *,
    fee_bps: float = 10.0,
    drawdown_weight: float = 0.5,
) -> list[Proposal]:
    """Every combination of the grid over `base`, best score first; invalid combinations (fast ≥
    slow, …) are skipped."""
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**base, **dict(zip(keys, values, strict=True))}
        try:
            strat = build_strategy(strategy, params)
        except ValueError:
            continue
        res = backtest(strat, bars, fee_bps=fee_bps)
        out.append(Proposal(params, res, res.return_pct - drawdown_weight * res.max_drawdown_pct))
    return sorted(out, key=lambda p: p.score, reverse=True)
