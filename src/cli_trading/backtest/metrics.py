"""Backtest metrics, computed incrementally: constant memory whatever the length of the run.

Definitions (docs/backtesting.md repeats them for users):

- returns are **daily**: the equity at the last bar of each market day (UTC date of the bar)
  against the previous day's; annualised with 365 periods a year (crypto trades every day);
- volatility = standard deviation of daily returns (sample, n - 1) x sqrt(365);
- Sharpe = mean daily return / its standard deviation x sqrt(365) (risk-free rate 0);
- Sortino = mean daily return / downside deviation x sqrt(365), where the downside deviation is
  sqrt(mean(min(r, 0)^2)) over all days;
- max drawdown = the largest fall of equity (marked at every bar's close) from its running peak,
  in %; its duration = the longest time equity spent below a previous peak (to the end of the run
  if it never recovered);
- CAGR = (final / starting equity)^(1 / years) - 1 with years = span of the run / 365.25 days;
- Calmar = CAGR / max drawdown (both as fractions);
- a trade is a round trip per symbol: from flat to flat again; its PnL is what it sold for minus
  what it bought for minus every fee paid on the way. Win rate = winning / closed trades; profit
  factor = gross profit / gross loss; average trade = mean PnL of closed trades;
- exposure time = share of bars at which some position was open;
- buy and hold = the starting cash split equally between the symbols at their first close,
  held to their last close, with no fees.

Floats are fine here: these figures describe a run, they never reach a ledger.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PERIODS_PER_YEAR = 365
DAYS_PER_YEAR = 365.25
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Metrics:
    """The figures of one backtest (percentages in %, money in the quote currency)."""

    start: str | None
    end: str | None
    bars: int
    days: int
    starting_cash: float
    final_equity: float
    total_return_pct: float
    cagr_pct: float
    volatility_pct: float  # annualised
    sharpe: float
    sortino: float
    max_drawdown_pct: float
    max_drawdown_duration_days: float
    calmar: float
    trades: int  # closed round trips
    open_trades: int
    win_rate_pct: float
    profit_factor: float | None  # None when no trade lost
    avg_trade: float
    avg_trade_pct: float
    exposure_time_pct: float
    fills: int
    fees_paid: float
    buy_and_hold_return_pct: float
    buy_and_hold_max_drawdown_pct: float
    annualisation: str = f"daily returns, {PERIODS_PER_YEAR} periods a year, risk-free rate 0"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Moments:
    """Running mean/variance (Welford) and the downside sum of squares."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    down2: float = 0.0

    def add(self, r: float) -> None:
        self.n += 1
        d = r - self.mean
        self.mean += d / self.n
        self.m2 += d * (r - self.mean)
        if r < 0:
            self.down2 += r * r

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    @property
    def downside(self) -> float:
        return math.sqrt(self.down2 / self.n) if self.n else 0.0


@dataclass(slots=True)
class Drawdown:
    """Running peak, the deepest fall from it and the longest time under it."""

    peak: float = -math.inf  # the first value is a peak
    peak_at: datetime | None = None
    max_pct: float = 0.0
    longest: timedelta = timedelta(0)
    under: bool = False

    def add(self, value: float, at: datetime) -> float:
        """Record `value` at `at`; returns the current drawdown in % (0 at a peak)."""
        peak = self.peak  # read once: this runs twice per bar
        if value >= peak:
            if self.under:
                self.longest = max(self.longest, at - self.peak_at)  # type: ignore[operator]  # set with peak
                self.under = False
            self.peak, self.peak_at = value, at
            return 0.0
        self.under = True
        dd = (peak - value) / peak * 100 if peak > 0 else 0.0
        if dd > self.max_pct:
            self.max_pct = dd
        return dd

    def finish(self, at: datetime | None, value: float) -> timedelta:
        """The longest underwater stretch, counting one still open at the end."""
        if at is not None and self.peak_at is not None and self.under:
            return max(self.longest, at - self.peak_at)
        return self.longest


@dataclass
class Trades:
    """Round trips per symbol from fills: open at the first buy from flat, closed at flat."""

    open: dict[str, float] = field(default_factory=dict)  # symbol -> cash flow so far (negative: cost)
    closed: int = 0
    wins: int = 0
    gross_profit: float = 0.0
    gross_loss: float = 0.0
    total: float = 0.0
    total_pct: float = 0.0
    _cost: dict[str, float] = field(default_factory=dict)

    def fill(self, symbol: str, side: str, notional: float, fee: float, flat_after: bool) -> float | None:
        """Record a fill; returns the trade's PnL when it closed the round trip."""
        flow = self.open.get(symbol, 0.0) + (notional if side == "sell" else -notional) - fee
        if side == "buy":
            self._cost[symbol] = self._cost.get(symbol, 0.0) + notional + fee
        if not flat_after:
            self.open[symbol] = flow
            return None
        self.open.pop(symbol, None)
        cost = self._cost.pop(symbol, 0.0)
        self.closed += 1
        self.total += flow
        self.total_pct += flow / cost * 100 if cost else 0.0
        if flow > 0:
            self.wins += 1
            self.gross_profit += flow
        else:
            self.gross_loss -= flow
        return flow


@dataclass
class MetricsBook:
    """Feed it every bar's equity (and buy and hold's) and every fill; ask for `Metrics`."""

    starting_cash: float
    bars: int = 0
    exposed_bars: int = 0
    first: datetime | None = None
    last: datetime | None = None
    equity: float = 0.0
    bh_equity: float = 0.0
    fills: int = 0
    fees: float = 0.0
    days: int = 0
    returns: _Moments = field(default_factory=_Moments)
    dd: Drawdown = field(default_factory=Drawdown)
    bh_dd: Drawdown = field(default_factory=Drawdown)
    trades: Trades = field(default_factory=Trades)
    _day_start: datetime = datetime.max.replace(tzinfo=UTC)  # none yet: the first bar opens a day
    _day_end: datetime = datetime.min.replace(tzinfo=UTC)
    _day_close: float = 0.0  # equity at the last bar of the previous day

    def __post_init__(self) -> None:
        self.equity = self.bh_equity = self._day_close = self.starting_cash

    def bar(self, at: datetime, equity: float, bh_equity: float, exposed: bool) -> float:
        """Record the equity after a step; returns the drawdown in %."""
        if not self._day_start <= at < self._day_end:
            if self.first is None:
                self.first = at
            else:
                self.returns.add(self.equity / self._day_close - 1 if self._day_close else 0.0)
                self._day_close = self.equity
            self._day_start = datetime.combine(at.date(), datetime.min.time(), at.tzinfo)
            self._day_end = self._day_start + ONE_DAY
            self.days += 1
        self.last, self.equity, self.bh_equity = at, equity, bh_equity
        self.bars += 1
        if exposed:
            self.exposed_bars += 1
        self.bh_dd.add(bh_equity, at)
        return self.dd.add(equity, at)

    def fill(self, symbol: str, side: str, notional: float, fee: float, flat_after: bool) -> float | None:
        self.fills += 1
        self.fees += fee
        return self.trades.fill(symbol, side, notional, fee, flat_after)

    def result(self) -> Metrics:
        moments = _Moments(**asdict(self.returns))
        if self.first is not None:  # the last day's return, without changing the book
            moments.add(self.equity / self._day_close - 1 if self._day_close else 0.0)
        ann = math.sqrt(PERIODS_PER_YEAR)
        growth = self.equity / self.starting_cash if self.starting_cash else 0.0
        span = (self.last - self.first) if self.first and self.last else timedelta(0)
        years = span.total_seconds() / 86400 / DAYS_PER_YEAR
        cagr = growth ** (1 / years) - 1 if years > 0 and growth > 0 else 0.0
        mdd = self.dd.max_pct
        t = self.trades
        return Metrics(
            start=self.first.isoformat() if self.first else None,
            end=self.last.isoformat() if self.last else None,
            bars=self.bars,
            days=self.days,
            starting_cash=self.starting_cash,
            final_equity=self.equity,
            total_return_pct=(growth - 1) * 100,
            cagr_pct=cagr * 100,
            volatility_pct=moments.std * ann * 100,
            sharpe=moments.mean / moments.std * ann if moments.std > 0 else 0.0,
            sortino=moments.mean / moments.downside * ann if moments.downside > 0 else 0.0,
            max_drawdown_pct=mdd,
            max_drawdown_duration_days=self.dd.finish(self.last, self.equity).total_seconds() / 86400,
            calmar=cagr / (mdd / 100) if mdd > 0 else 0.0,
            trades=t.closed,
            open_trades=len(t.open),
            win_rate_pct=t.wins / t.closed * 100 if t.closed else 0.0,
            profit_factor=t.gross_profit / t.gross_loss if t.gross_loss > 0 else None,
            avg_trade=t.total / t.closed if t.closed else 0.0,
            avg_trade_pct=t.total_pct / t.closed if t.closed else 0.0,
            exposure_time_pct=self.exposed_bars / self.bars * 100 if self.bars else 0.0,
            fills=self.fills,
            fees_paid=self.fees,
            buy_and_hold_return_pct=(self.bh_equity / self.starting_cash - 1) * 100 if self.starting_cash else 0.0,
            buy_and_hold_max_drawdown_pct=self.bh_dd.max_pct,
        )
