"""Strategies: from bars to a side and a confidence, or hold.

The interface (docs/strategies.md): a strategy is a subclass of `Strategy` with a `name`, a
`Params` model (a `StrategyParams`, validated at start) and `on_bar(candle) -> Signal`. One
instance follows one symbol: it sees every closed candle of that symbol exactly once, oldest
first, keeps whatever state it needs (incremental indicators: constant work per bar) and answers
with its decision as of that candle. The backtest, the paper system and live trading call the
same `on_bar` in the same order, so a strategy behaves the same in all three.

`decide(bars)` gives the decision after a window of bars: a fresh instance fed the window (the
built-ins compute it directly from the window, which is what the optimizer's quick search uses).

Pure and synchronous. Parameters are strict pydantic models: an unknown or invalid parameter is
a ValueError that names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Generic, Literal, NamedTuple, Protocol, TypeVar

from pydantic import ConfigDict, Field, ValidationError, model_validator

from cli_trading.config import StrictModel
from cli_trading.trading.indicators import EMA, RSI, Bands, Rolling, bollinger, ema, rsi

Side = Literal["buy", "sell"]


class PriceBar(Protocol):
    """What `decide` reads from a bar (`cli_trading.market.bars.Bar` satisfies it)."""

    @property
    def close(self) -> Decimal | float: ...
    @property
    def high(self) -> Decimal | float: ...
    @property
    def low(self) -> Decimal | float: ...


class Candle(NamedTuple):
    """One closed bar as a strategy sees it: prices and volume as floats (indicators shape a
    decision; sizing and fills use the exact Decimal prices). `ts` is the bar's open time (UTC)."""

    symbol: str
    ts: datetime | None
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    @classmethod
    def of(cls, bar: Any, symbol: str = "") -> Candle:
        """From a `market.bars.Bar` or anything with close/high/low (open, volume, ts optional)."""
        floats = getattr(bar, "floats", None)
        if floats is not None:  # a Bar: its prices as floats, converted once (the backtest's candle)
            o, h, lo, c, v = floats()
            return cls(bar.symbol, bar.ts, o, h, lo, c, v)
        close = float(bar.close)
        return cls(
            getattr(bar, "symbol", symbol),
            getattr(bar, "ts", None),
            float(getattr(bar, "open", close)),
            float(bar.high),
            float(bar.low),
            close,
            float(getattr(bar, "volume", 0.0)),
        )


class _SignalFields(NamedTuple):
    side: Side | None
    confidence: float
    strategy: str
    reason: str = ""


class Signal(_SignalFields):
    """A strategy's decision: `side` None means hold. `confidence` is within 0..1 (the risk
    manager rejects signals below risk.yaml's min_confidence; sizing scales with it). Immutable
    (a named tuple: strategies make one per bar, so it must be cheap)."""

    __slots__ = ()

    def __new__(cls, side: Side | None, confidence: float, strategy: str, reason: str = "") -> Signal:
        if side not in ("buy", "sell", None):
            raise ValueError(f"side must be 'buy', 'sell' or None, got {side!r}")
        if not 0.0 <= confidence <= 1.0:  # also rejects NaN
            raise ValueError(f"confidence must be within 0..1, got {confidence!r}")
        return super().__new__(cls, side, confidence, strategy, reason)

    @property
    def is_hold(self) -> bool:
        return self.side is None


def _trusted(side: Side | None, confidence: float, strategy: str, reason: str) -> Signal:
    """A Signal whose values are valid by construction (the built-ins' hot path)."""
    return _new(Signal, (side, confidence, strategy, reason))


_new = tuple.__new__  # `_new(Signal, fields)`: `_trusted` without its call, where every bar pays it


def hold(strategy: str, reason: str) -> Signal:
    return Signal(None, 0.0, strategy, reason)


def _unit(x: float) -> float:
    """`x` clamped into 0..1 (NaN counts as 0)."""
    return min(1.0, max(0.0, x)) if not math.isnan(x) else 0.0


class StrategyParams(StrictModel):
    """Base of every strategy's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=StrategyParams)


class Strategy(Generic[P]):
    """Base class of every strategy, built-in or yours.

    Set `name` (the label on its signals; strategies.yaml may rename an instance) and `Params`
    (its parameter model), and implement `on_bar`. Override `lookback` when the strategy needs
    some bars before it can decide (it is documentation and a hint to callers; `on_bar` must
    still answer, with a hold, before then)."""

    name: str = "strategy"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: P | None = None, *, name: str | None = None) -> None:
        self.params: P = params if params is not None else self.Params()  # type: ignore[assignment]  # P is Params
        if name:
            self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @property
    def lookback(self) -> int:
        return 1

    def on_bar(self, candle: Candle) -> Signal:
        """The decision once `candle` has closed (called once per candle, oldest first)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement on_bar")

    def fresh(self) -> Strategy[P]:
        """A new instance with the same parameters and name and no history (one per symbol)."""
        return type(self)(self.params, name=self.name)

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        """The decision after `bars` (oldest first), by a fresh instance: O(len(bars))."""
        sim = self.fresh()
        sig = hold(self.name, "no bars")
        for b in bars:
            sig = sim.on_bar(Candle.of(b))
        return sig


BaseStrategy = Strategy  # the earlier name


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


class TrendFollowing(Strategy[TrendParams]):
    """EMA crossover: buy while the fast EMA is above the slow one, sell while below. The spread
    between them, as a percentage of the slow EMA, is the trend's strength: confidence rises from
    0.5 at no spread to 1 at `full_confidence_spread_pct`."""

    name = "trend"
    Params = TrendParams

    def __init__(self, params: TrendParams | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p = self.params
        self._fast, self._slow, self._n = EMA(p.fast), EMA(p.slow), 0
        self._min, self._full = p.min_spread_pct, p.full_confidence_spread_pct  # read on every bar
        # the reasons are fixed strings: formatting the spread on every bar would cost more than
        # the decision itself (the confidence already says how strong the trend is)
        self._flat = hold(self.name, f"ema{p.fast} and ema{p.slow} within ±{p.min_spread_pct}%")
        self._above, self._below = f"ema{p.fast} above ema{p.slow}", f"ema{p.fast} below ema{p.slow}"

    @property
    def lookback(self) -> int:
        return self.params.slow

    def on_bar(self, candle: Candle) -> Signal:
        self._n += 1
        x = candle.close
        return self._decision(self._fast.update(x), self._slow.update(x), self._n)

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        closes = closes_of(bars)
        return self._decision(ema(closes, self.params.fast), ema(closes, self.params.slow), len(closes))

    def _decision(self, fast: float | None, slow: float | None, n: int) -> Signal:
        if fast is None or slow is None:
            return hold(self.name, f"not enough bars ({n} < {self.params.slow})")
        if slow <= 0:
            return hold(self.name, "non-positive prices")
        spread = (fast - slow) / slow * 100
        if spread != spread:  # NaN prices
            return hold(self.name, "prices are not numbers")
        if -self._min <= spread <= self._min:
            return self._flat
        strength = abs(spread) / self._full
        # confidence is within 0.5..1 by construction: no need to validate it again
        if spread > 0:
            return _new(Signal, ("buy", 0.5 + 0.5 * (strength if strength < 1.0 else 1.0), self.name, self._above))
        return _new(Signal, ("sell", 0.5 + 0.5 * (strength if strength < 1.0 else 1.0), self.name, self._below))


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


class MeanReversion(Strategy[MeanReversionParams]):
    """Bollinger bands confirmed by RSI: sell a close above the upper band while overbought, buy
    one below the lower band while oversold. Confidence rises from 0.5 with how far the close is
    outside the band (up to one band half-width: +0.25) and how extreme the RSI is (+0.25)."""

    name = "mean_reversion"
    Params = MeanReversionParams

    def __init__(self, params: MeanReversionParams | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._bands, self._rsi, self._n = Rolling(self.params.period), RSI(self.params.rsi_period), 0
        self._inside = hold(self.name, "close inside the bands")
        self._lookback = self.lookback
        self._k2 = self.params.width**2

    @property
    def lookback(self) -> int:
        return max(self.params.period, self.params.rsi_period + 1)

    def on_bar(self, candle: Candle) -> Signal:
        self._n += 1
        x = candle.close
        bands, rsi_ = self._bands, self._rsi
        bands.update(x)
        rsi_.update(x)
        if self._n < self._lookback:
            return hold(self.name, f"not enough bars ({self._n} < {self._lookback})")
        mid, var = bands.moments()
        if var <= 0 or (x - mid) ** 2 <= self._k2 * var:  # inside the bands, the common case: no sqrt
            return self._inside
        half = self.params.width * math.sqrt(var)
        return self._decision(Bands(mid, mid + half, mid - half), x, lambda: rsi_.value)

    def decide(self, bars: Sequence[PriceBar]) -> Signal:
        closes = closes_of(bars)
        if len(closes) < self.lookback:
            return hold(self.name, f"not enough bars ({len(closes)} < {self.lookback})")
        bands = bollinger(closes, self.params.period, self.params.width)
        if bands is None:  # not with enough bars (checked above): for the type checker
            return hold(self.name, "not enough bars")
        return self._decision(bands, closes[-1], lambda: rsi(closes, self.params.rsi_period))

    def _decision(self, bands: Bands, last: float, rsi_of: Callable[[], float | None]) -> Signal:
        p = self.params
        half = bands.upper - bands.mid
        if half <= 0 or bands.lower <= last <= bands.upper:
            return self._inside
        r = rsi_of()  # only when the close is outside the bands (the windowed RSI costs O(n))
        if r is None:  # not with the lookback, which covers the RSI: for the type checker
            return hold(self.name, "not enough bars for the RSI")
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

STRATEGIES: dict[str, type[Strategy[Any]]] = {
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


def build_strategy(
    name: str, params: dict[str, Any] | None = None, *, cls: type[Strategy[Any]] | None = None
) -> Strategy[Any]:
    """A strategy with its parameters validated; ValueError naming the problem. `cls`: a class
    of your own (strategies.yaml's `class:`), else the built-in registered under `name`."""
    cls = cls or STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)} (or give class: module:Class)")
    model = cls.Params
    try:
        validated = model.model_validate(params or {})
    except ValidationError as exc:
        raise ValueError(f"strategy {name!r}: {_describe(exc, list(model.model_fields))}") from None
    return cls(validated, name=name)


NO_SIGNAL = hold("combined", "no strategy has a signal")


def combine(signals: Sequence[Signal], *, tie_margin: float = 0.1) -> Signal:
    """The most confident non-hold signal ("max_confidence"; the first of equals). When the most
    confident signal on the other side is within `tie_margin` of it, the strategies disagree: hold."""
    # one pass: the most confident of each side (the first of equals), then the better of the two
    buy: Signal | None = None
    sell: Signal | None = None
    for s in signals:
        side = s.side
        if side is None:
            continue
        if side == "buy":
            if buy is None or s.confidence > buy.confidence:
                buy = s
        elif sell is None or s.confidence > sell.confidence:
            sell = s
    if buy is None or sell is None:
        best = buy or sell
        return NO_SIGNAL if best is None else best
    if buy.confidence > sell.confidence:
        best, rival = buy, sell
    elif sell.confidence > buy.confidence:
        best, rival = sell, buy
    else:  # equally confident: the first in order is the best
        best, rival = (buy, sell) if list(signals).index(buy) < list(signals).index(sell) else (sell, buy)
    if best.confidence - rival.confidence < tie_margin:
        return hold("combined", f"{best.strategy} ({best.side}) and {rival.strategy} ({rival.side}) disagree")
    return best
