"""Strategies: from a window of bars to a side and a confidence, or hold. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, ValidationError, model_validator

from cli_trading.config import StrictModel
from cli_trading.trading.indicators import bollinger, ema, rsi


class BarLike(Protocol):
    @property
    def close(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Signal:
    side: Literal["buy", "sell"] | None
    confidence: float
    strategy: str
    reason: str = ""


def hold(strategy: str, reason: str) -> Signal:
    return Signal(None, 0.0, strategy, reason)


class TrendParams(StrictModel):
    fast: int = Field(12, ge=2, le=200)
    slow: int = Field(26, ge=3, le=400)
    min_spread_pct: float = Field(0.05, ge=0)
    full_confidence_spread_pct: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> TrendParams:
        if self.fast >= self.slow:
            raise ValueError("fast must be shorter than slow")
        return self


class MeanReversionParams(StrictModel):
    period: int = Field(20, ge=5, le=400)
    width: float = Field(2.0, gt=0, le=5)
    rsi_period: int = Field(14, ge=2, le=100)
    rsi_low: float = Field(30, ge=0, le=50)
    rsi_high: float = Field(70, ge=50, le=100)


class TrendFollowing:
    """EMA crossover: buy while the fast EMA is above the slow one, sell below; the wider the
    spread, the higher the confidence."""

    name = "trend"

    def __init__(self, params: TrendParams | None = None) -> None:
        self.params = params or TrendParams()

    def decide(self, bars: Sequence[BarLike]) -> Signal:
        p = self.params
        closes = [float(b.close) for b in bars]
        fast, slow = ema(closes, p.fast), ema(closes, p.slow)
        if fast is None or slow is None or slow <= 0:
            return hold(self.name, "not enough bars")
        spread = (fast - slow) / slow * 100
        if abs(spread) < p.min_spread_pct:
            return hold(self.name, f"spread {spread:.3f}% too small")
        conf = min(1.0, 0.5 + abs(spread) / p.full_confidence_spread_pct / 2)
        return Signal("buy" if spread > 0 else "sell", conf, self.name, f"ema spread {spread:.3f}%")


class MeanReversion:
    """Bollinger bands with RSI: sell above the upper band when overbought, buy below the lower
    band when oversold; confidence grows with the distance outside the band."""

    name = "mean_reversion"

    def __init__(self, params: MeanReversionParams | None = None) -> None:
        self.params = params or MeanReversionParams()

    def decide(self, bars: Sequence[BarLike]) -> Signal:
        p = self.params
        closes = [float(b.close) for b in bars]
        bands, r = bollinger(closes, p.period, p.width), rsi(closes, p.rsi_period)
        if bands is None or r is None:
            return hold(self.name, "not enough bars")
        mid, upper, lower = bands
        last, half = closes[-1], max(upper - mid, 1e-12)
        if last > upper and r >= p.rsi_high:
            return Signal("sell", min(1.0, 0.55 + (last - upper) / half), self.name, f"above upper band, rsi {r:.0f}")
        if last < lower and r <= p.rsi_low:
            return Signal("buy", min(1.0, 0.55 + (lower - last) / half), self.name, f"below lower band, rsi {r:.0f}")
        return hold(self.name, "inside the bands")


STRATEGIES: dict[str, tuple[type, type[StrictModel]]] = {
    "trend": (TrendFollowing, TrendParams),
    "mean_reversion": (MeanReversion, MeanReversionParams),
}


def build_strategy(name: str, params: dict[str, Any] | None = None) -> Any:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    cls, model = STRATEGIES[name]
    try:
        return cls(model.model_validate(params or {}))
    except ValidationError as exc:
        raise ValueError(f"strategy {name}: {exc}") from exc


def combine(signals: Sequence[Signal], *, tie_margin: float = 0.1) -> Signal:
    """The most confident non-hold signal; opposing signals of similar confidence cancel out."""
    active = sorted((s for s in signals if s.side), key=lambda s: s.confidence, reverse=True)
    if not active:
        return hold("combined", "no strategy has a signal")
    best = active[0]
    rival = next((s for s in active if s.side != best.side), None)
    if rival and best.confidence - rival.confidence < tie_margin:
        return hold("combined", f"{best.strategy} and {rival.strategy} disagree")
    return best
