"""The strategies YAML file (strategies.yaml): which strategies run on which symbols, with which
parameters. Unknown keys are an error naming them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cli_trading.config import StrictModel, load_yaml
from cli_trading.trading.strategies import build_strategy


class StrategyEntry(StrictModel):
    name: str
    symbols: list[str] = Field(default_factory=lambda: ["*"])
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _buildable(self) -> StrategyEntry:
        build_strategy(self.name, self.params)  # unknown name or parameter → error at load time
        return self


class StrategyFile(StrictModel):
    strategies: list[StrategyEntry]


def load_strategy_config(path: Path) -> StrategyFile:
    return load_yaml(path, StrategyFile)  # type: ignore[return-value]
