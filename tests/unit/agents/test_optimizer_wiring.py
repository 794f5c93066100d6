"""The parameter optimizer's parts wired from the settings (agents/optimizer.py `wire_optimizer`):
the strategies and risk rules of the configuration folder, the shipped ones otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cli_trading.agents.optimizer import OptimizerParts, wire_optimizer
from cli_trading.config import Settings
from tests.support import services

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_configuration_folders_files_win_over_the_shipped_ones(tmp_path: Path) -> None:
    def wire(s: Settings) -> OptimizerParts:
        return wire_optimizer(services.offline(s, name="parameter-optimizer", redis=None, now=NOW))

    shipped = wire(Settings())
    (tmp_path / "risk.yaml").write_text("risk:\n  max_order_notional: 123\n")
    ours = wire(Settings(config_dir=tmp_path))
    assert ours.rules.max_order_notional == Decimal(123) != shipped.rules.max_order_notional
    assert [e.name for e in ours.strategies.strategies] == [e.name for e in shipped.strategies.strategies]
    assert {"trend", "mean_reversion"} <= {e.name for e in shipped.strategies.strategies}
