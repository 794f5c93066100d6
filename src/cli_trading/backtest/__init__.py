"""Backtesting through the system's own pipeline (docs/backtesting.md).

`run(bars_by_symbol, strategies_config, risk_config, *, starting_cash, ...) -> BacktestResult`
replays bars through the same pure functions the agents call — strategies, sizing, the halt
policy per market day, the risk rules, the paper fill model and the ledger — in one process,
with no Redis and no database. It is the API the optimiser builds on: see `run`'s docstring.
"""

from cli_trading.backtest.data import DataError, load_series, timeline
from cli_trading.backtest.engine import Engine, Fill, HaltEvent, SimConfig
from cli_trading.backtest.metrics import Metrics
from cli_trading.backtest.runner import BacktestResult, Point, Recorder, run

__all__ = [
    "BacktestResult",
    "DataError",
    "Engine",
    "Fill",
    "HaltEvent",
    "Metrics",
    "Point",
    "Recorder",
    "SimConfig",
    "load_series",
    "run",
    "timeline",
]
