"""The risk rules' settings (risk.yaml), as pydantic models: apart from trading/risk.py, whose
pure functions are compiled with mypyc (native.py), which cannot compile pydantic models.
`cli_trading.trading.risk` re-exports both."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from pydantic import Field

from cli_trading.config import StrictModel


class RiskRules(StrictModel):
    min_confidence: float = Field(0.55, ge=0, le=1)
    trading_window_utc: tuple[time, time] | None = None
    blocked_sides: list[str] = Field(default_factory=list)
    max_order_notional: Decimal = Decimal("2500")
    max_position_notional: Decimal = Decimal("6000")
    max_total_exposure: Decimal = Decimal("9000")
    max_orders_per_minute: int = Field(120_000, ge=1)
    manual_bypasses_confidence: bool = True


class RiskFile(StrictModel):
    risk: RiskRules = RiskRules()
