"""Strategies: from a window of bars (oldest first) to a side and a confidence, or hold.

Pure and synchronous: `decide` reads only `.close`, `.high` and `.low` of the bars it is given
(a `cli_trading.market.bars.Bar`, or anything with those attributes), converts them to float and
returns a `Signal`. Parameters are strict pydantic models: an unknown or invalid parameter is a
ValueError that names it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import ConfigDict, Field, ValidationError, model_validator

from cli_trading.config import StrictModel
from cli_trading.trading.indicators import bollinger, ema, rsi

Side = Literal["buy", "sell"]


class PriceBar(Protocol):
    """What a strategy reads from a bar (`cli_trading.market.bars.Bar` satisfies it)."""

    @property
    def close(self) -> Decimal | float: ...
    @property
    def high(self) -> Decimal | float: ...
    @property
    def low(self) -> Decimal | float: ...


@dataclass(frozen=True)
class Signal:
    """A strategy's decision: `side` None means hold. `confidence` is within 0..1."""

    side: Side | None
    confidence: float
    strategy: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell", None):
            raise ValueError(f"side must be 'buy', 'sell' or None, got {self.side!r}")
        if not 0.0 <= self.confidence <= 1.0:  # also rejects NaN
            raise ValueError(f"confidence must be within 0..1, got {self.confidence!r}")

    @property
    def is_hold(self) -> bool:
        return self.side is None


def hold(strategy: str, reason: str) -> Signal:
    return Signal(None, 0.0, strategy, reason)


def _unit(x: float) -> float:
    """`x` clamped into 0..1 (NaN counts as 0)."""
    return min(1.0, max(0.0, x)) if not math.isnan(x) else 0.0


class StrategyParams(StrictModel):
    """Base of every strategy's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(Protocol):
    """What the analyst, the backtest and the optimizer rely on."""

    name: str
    params: StrategyParams

    @property
    def lookback(self) -> int:
        """The fewest bars `decide` needs to give anything but 'not enough bars'."""
        ...

    def decide(self, bars: Sequence[PriceBar]) -> Signal: ...


P = TypeVar("P", bound=StrategyParams)


class BaseStrategy(Generic[P]):
    """Shared plumbing: a name, a params model class and an instance of it."""

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]]

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else self.Params()  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @property
    def lookback(self) -> int:
        raise NotImplementedError

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        raise NotImplementedError


def closes_of(bars: Sequence[PriceBar]) -> list[float]:
    return [float(b.close) for b in bars]


# -- trend following ------------------------------------------------------------------------


class TrendParams(StrategyParams):
    fast: int = Field(12, ge=2, le=200, description="fast EMA period (bars)")
    slow: int = Field(26, ge=3, le=400, description="slow EMA period (bars)")
    min_spread_pct: float = Field(0.05, ge=0, le=50, description="hold while |fast - slow| / slow is below this (%)")
    full_confidence_spread_pct: float = Field(1.0, gt=0, le=100, description="spread (%) that gives confidence 1")

    @model_validator(mode="after")
    def _consistent(self) -> TrendParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        if self.full_confidence_spread_pct <= self.min_spread_pct:
            raise ValueError("full_confidence_spread_pct must be above min_spread_pct")
        return self


class TrendFollowing(BaseStrategy[TrendParams]):
    """EMA crossover: buy while the fast EMA is above the slow one, sell while below. The spread
    between them, as a percentage of the slow EMA, is the trend's strength: confidence rises from
    0.5 at no spread to 1 at `full_confidence_spread_pct`."""

    name = "trend"
    Params = TrendParams

    @property
    def lookback(self) -> int:
        return self.params.slow

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        p = self.params
        closes = closes_of(bars)
        fast, slow = ema(closes, p.fast), ema(closes, p.slow)
        if fast is None or slow is None:
            return hold(self.name, f"not enough bars ({len(closes)} < {p.slow})")
        if slow <= 0:
            return hold(self.name, "non-positive prices")
        spread = (fast - slow) / slow * 100
        if abs(spread) <= p.min_spread_pct:
            return hold(self.name, f"ema spread {spread:+.3f}% within ±{p.min_spread_pct}%")
        confidence = 0.5 + 0.5 * _unit(abs(spread) / p.full_confidence_spread_pct)
        side: Side = "buy" if spread > 0 else "sell"
        return Signal(side, confidence, self.name, f"ema{p.fast} vs ema{p.slow} spread {spread:+.3f}%")


# -- mean reversion -------------------------------------------------------------------------


class MeanReversionParams(StrategyParams):
    period: int = Field(20, ge=5, le=400, description="Bollinger period (bars)")
    width: float = Field(2.0, gt=0, le=5, description="band half-width in standard deviations")
    rsi_period: int = Field(14, ge=2, le=100, description="RSI period (bars)")
    rsi_low: float = Field(30, ge=0, le=50, description="oversold at or below this RSI")
    rsi_high: float = Field(70, ge=50, le=100, description="overbought at or above this RSI")

    @model_validator(mode="after")
    def _consistent(self) -> MeanReversionParams:
        if self.rsi_low >= self.rsi_high:
            raise ValueError(f"rsi_low ({self.rsi_low}) must be below rsi_high ({self.rsi_high})")
        return self


class MeanReversion(BaseStrategy[MeanReversionParams]):
    """Bollinger bands confirmed by RSI: sell a close above the upper band while overbought, buy
    one below the lower band while oversold. Confidence rises from 0.5 with how far the close is
    outside the band (up to one band half-width: +0.25) and how extreme the RSI is (+0.25)."""

    name = "mean_reversion"
    Params = MeanReversionParams

    @property
    def lookback(self) -> int:
        return max(self.params.period, self.params.rsi_period + 1)

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        p = self.params
        closes = closes_of(bars)
        if len(closes) < self.lookback:
            return hold(self.name, f"not enough bars ({len(closes)} < {self.lookback})")
        bands = bollinger(closes, p.period, p.width)
        assert bands is not None  # enough bars, checked above
        last, half = closes[-1], bands.upper - bands.mid
        if half <= 0 or bands.lower <= last <= bands.upper:
            return hold(self.name, "close inside the bands")
        r = rsi(closes, p.rsi_period)
        assert r is not None
        if last > bands.upper and r >= p.rsi_high:
            extremity = (r - p.rsi_high) / max(100 - p.rsi_high, 1e-9)
            return self._signal("sell", (last - bands.upper) / half, extremity, f"close above upper band, rsi {r:.0f}")
        if last < bands.lower and r <= p.rsi_low:
            extremity = (p.rsi_low - r) / max(p.rsi_low, 1e-9)
            return self._signal("buy", (bands.lower - last) / half, extremity, f"close below lower band, rsi {r:.0f}")
        return hold(self.name, f"close outside the bands but rsi {r:.0f} not extreme")

    def _signal(self, side: Side, stretch: float, extremity: float, reason: str) -> Signal:
        return Signal(side, 0.5 + 0.25 * _unit(stretch) + 0.25 * _unit(extremity), self.name, reason)


# -- registry and combination ---------------------------------------------------------------

STRATEGIES: dict[str, type[BaseStrategy[Any]]] = {
    TrendFollowing.name: TrendFollowing,
    MeanReversion.name: MeanReversion,
}


def _describe(exc: ValidationError, known: Sequence[str]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {loc!r} (known: {', '.join(known)})")
        else:
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def params_model(name: str) -> type[StrategyParams]:
    """The parameter model of a registered strategy; ValueError on an unknown name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name].Params


def build_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """A strategy by registry name with its parameters validated; ValueError naming the problem."""
    model = params_model(name)
    try:
        validated = model.model_validate(params or {})
    except ValidationError as exc:
        raise ValueError(f"strategy {name!r}: {_describe(exc, list(model.model_fields))}") from None
    return STRATEGIES[name](validated)


def combine(signals: Sequence[Signal], *, tie_margin: float = 0.1) -> Signal:
    """The most confident non-hold signal ("max_confidence"). When the most confident signal on
    the other side is within `tie_margin` of it, the strategies disagree: hold."""
    active = sorted((s for s in signals if s.side), key=lambda s: s.confidence, reverse=True)
    if not active:
        return hold("combined", "no strategy has a signal")
    best = active[0]
    rival = next((s for s in active if s.side != best.side), None)
    if rival is not None and best.confidence - rival.confidence < tie_margin:
        return hold("combined", f"{best.strategy} ({best.side}) and {rival.strategy} ({rival.side}) disagree")
    return best
