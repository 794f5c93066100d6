"""One module per agent; `AGENT_CLASSES` maps the agent names of the contracts to them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cli_trading.agents.base import Agent

_MODULES = {
    "orchestrator": ("orchestrator", "Orchestrator"),
    "portfolio-manager": ("portfolio", "PortfolioManager"),
    "market-analyst": ("analyst", "MarketAnalyst"),
    "risk-manager": ("risk", "RiskManager"),
    "trade-executor": ("executor", "TradeExecutor"),
    "notification-manager": ("notifier", "NotificationManager"),
    "parameter-optimizer": ("optimizer", "ParameterOptimizer"),
}


def agent_class(name: str) -> type[Agent]:
    module, cls = _MODULES[name]
    return getattr(import_module(f"cli_trading.agents.{module}"), cls)
