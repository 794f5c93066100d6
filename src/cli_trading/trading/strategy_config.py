"""The strategies file (strategies.yaml): which strategies run on which symbols, with which
parameters, and how their signals are combined. An unknown key anywhere, an unknown strategy or
an invalid parameter is an error at load time that names it (ConfigError, a ValueError).

A strategy of your own is named by import path next to the built-ins:

    - name: breakout
      class: my_strategies.breakout:Breakout
      params: {period: 48}

The module is imported from the Python path, to which the folder of the strategies file is
added first (so `my_strategies/` may sit next to strategies.yaml in your --config folder)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from cli_trading.config import DEFAULTS_DIR, StrictModel, load_yaml
from cli_trading.trading.strategies import Signal, Strategy, build_strategy, combine


def import_strategy(path: str) -> type[Strategy[Any]]:
    """`package.module:ClassName` → the class; ValueError naming what is wrong."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"class {path!r}: write it as package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"class {path!r}: cannot import {module_name!r} ({exc})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"class {path!r}: {attr!r} is not a subclass of cli_trading.trading.strategies.Strategy")
    return cls


class StrategyEntry(StrictModel):
    name: str
    class_: str | None = Field(None, alias="class", description="module:Class of a strategy of your own")
    symbols: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    _cls: type[Strategy[Any]] | None = PrivateAttr(None)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _buildable(self) -> StrategyEntry:
        if self.class_:
            self._cls = import_strategy(self.class_)
        self.build()  # unknown name, class or parameter: an error at load time
        return self

    def applies_to(self, symbol: str) -> bool:
        return "*" in self.symbols or symbol in self.symbols

    def build(self) -> Strategy[Any]:
        """A new instance (one per symbol: a strategy keeps the state of the bars it has seen)."""
        return build_strategy(self.name, self.params, cls=self._cls)


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

    def for_symbol(self, symbol: str) -> dict[str, Strategy[Any]]:
        """Fresh instances of the strategies that apply to `symbol`, by name, in file order."""
        return {e.name: e.build() for e in self.strategies if e.applies_to(symbol)}


def load_strategy_config(path: str | Path) -> StrategyFile:
    folder = str(Path(path).resolve().parent)
    if folder != str(DEFAULTS_DIR.resolve()) and folder not in sys.path:  # user strategies may live next to the file
        sys.path.insert(0, folder)
    return load_yaml(Path(path), StrategyFile)


def load_strategies(path: str | Path) -> list[Strategy[Any]]:
    """The strategies of a strategies.yaml file, built and validated, in file order."""
    return [entry.build() for entry in load_strategy_config(path).strategies]
