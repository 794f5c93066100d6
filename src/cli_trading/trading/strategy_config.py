"""The strategies file (strategies.yaml): which strategies run on which symbols, with which
parameters, and how their signals are combined. An unknown key anywhere, an unknown strategy or
an invalid parameter is an error at load time that names it (ConfigError, a ValueError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from cli_trading.config import StrictModel, load_yaml
from cli_trading.trading.strategies import Signal, Strategy, build_strategy, combine


class StrategyEntry(StrictModel):
    name: str
    symbols: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _buildable(self) -> StrategyEntry:
        build_strategy(self.name, self.params)  # unknown name or parameter: error at load time
        return self

    def applies_to(self, symbol: str) -> bool:
        return "*" in self.symbols or symbol in self.symbols

    def build(self) -> Strategy:
        return build_strategy(self.name, self.params)


class StrategyFile(StrictModel):
    strategies: list[StrategyEntry] = Field(min_length=1)
    combine: Literal["max_confidence"] = "max_confidence"
    tie_margin: float = Field(0.1, ge=0, le=1, description="opposing signals closer than this: hold")

    @model_validator(mode="after")
    def _unique_names(self) -> StrategyFile:
        names = [e.name for e in self.strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategy listed more than once: {', '.join(dupes)}")
        return self

    def combine_signals(self, signals: list[Signal]) -> Signal:
        return combine(signals, tie_margin=self.tie_margin)


def load_strategy_config(path: str | Path) -> StrategyFile:
    return load_yaml(Path(path), StrategyFile)  # type: ignore[return-value]


def load_strategies(path: str | Path) -> list[Strategy]:
    """The strategies of a strategies.yaml file, built and validated, in file order."""
    return [entry.build() for entry in load_strategy_config(path).strategies]
