"""The backtest engine: the agents' pipeline, in one process, bar by bar.

Every decision is the pure function the agents call, in the order they call it:

- the strategies see the bar, their signals are combined (market-analyst: `Strategy.on_bar`,
  `combine`);
- marks, the market day's rollover, PnL halts (orchestrator `on_bars`: `Ledger.mark`,
  `day.rollover`, `halt.clears_at_rollover`/`unhalt`, `halt.automatic`);
- a run per traded symbol: sizing and the halt check (orchestrator `_size`:
  `size_order`, `halt.allows`);
- the pre-trade rules (risk-manager: `risk.evaluate`);
- the paper fill with slippage, fee and affordability (trade-executor's paper engine:
  `paper_fill`, `affordable`);
- the ledger and PnL halts again (orchestrator `on_status`: `Ledger.apply`, `halt.automatic`).

The trading day is the market day: the UTC date of the bar's open time (in replays under
`cli-trading up` as well). Order ids are `bt-<n>`. No I/O here: `runner.run` drives it and records the outputs.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from cli_trading.contracts import HaltMode
from cli_trading.halt import policy
from cli_trading.halt.state import HaltState, Limits
from cli_trading.market.bars import Bar
from cli_trading.trading import day as tday
from cli_trading.trading import risk
from cli_trading.trading.fills import affordable, paper_fill, size_order
from cli_trading.trading.ledger import WHOLE, FillRecord, Ledger, RecentKeys
from cli_trading.trading.strategies import Candle, Signal, Strategy, combine, hold
from cli_trading.trading.strategy_config import StrategyFile

ZERO = Decimal(0)
# named tuples made without their Python-level __new__ (every field given): a bar or a fill each
_candle = functools.partial(tuple.__new__, Candle)
_fill = functools.partial(tuple.__new__, FillRecord)
_request = functools.partial(tuple.__new__, risk.Request)
ONE_DAY = timedelta(days=1)
MAX_HALT_EVENTS = 10_000  # the latest; a longer run keeps its halts' counts only
MARGIN = Decimal("1e-9")


@dataclass(frozen=True)
class SimConfig:
    """The knobs the agents take from settings (Settings' fields of the same names)."""

    starting_cash: Decimal = Decimal("10000")
    risk_fraction: Decimal = Decimal("0.02")
    fee_bps: Decimal = Decimal("10")
    slippage_bps: Decimal = Decimal("5")
    daily_target_pct: Decimal = Decimal("5")
    daily_loss_limit_pct: Decimal = Decimal("3")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SimConfig:
        names = cls.__dataclass_fields__
        values = {n: getattr(settings, n) for n in names if hasattr(settings, n)}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


class Fill(NamedTuple):
    """One fill, as the trade executor would have reported it (a named tuple: cheap to make)."""

    order_id: str
    ts: datetime  # open time of the bar it was decided on
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    strategy: str
    confidence: float
    reason: str


_bt_fill = functools.partial(tuple.__new__, Fill)


@dataclass(frozen=True, slots=True)
class HaltEvent:
    ts: datetime
    action: str  # "halt" or "unhalt"
    reason: str
    day: str


@dataclass
class Counters:
    steps: int = 0
    runs: int = 0
    holds: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    halts: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class Engine:
    """The pipeline's state for one run: ledger, risk book, halt state, trading day, strategies."""

    def __init__(self, strategies: StrategyFile, rules: risk.RiskRules, cfg: SimConfig, symbols: Iterable[str]) -> None:
        self.config, self.rules, self.cfg = strategies, rules, cfg
        self.traded = set(symbols)
        # order ids are unique by construction here: the ledger's guard against a redelivered
        # fill needs no memory of 100,000 of them
        self.ledger = Ledger(cfg.starting_cash, seen=RecentKeys(64))
        self.book = risk.RiskBook()
        self.halt = HaltState()
        self.day: tday.TradingDay | None = None
        self.day_start = self.day_end = datetime.min.replace(tzinfo=UTC)  # none yet: the first bar rolls over
        self.defaults = Limits(cfg.daily_target_pct, cfg.daily_loss_limit_pct)
        self.overridden: set[str] = set()
        self.models: dict[str, list[Strategy[Any]]] = {}
        self.on_bar: dict[str, list[Callable[[Candle], Signal]]] = {}  # the models' on_bar, bound
        self.signals: dict[str, Signal] = {}
        self.closes: dict[str, float] = {}
        self._bounds: tuple[Decimal, Decimal] | None = None
        self._eq: Decimal | None = None  # equity at the current marks and fills
        self._tie = strategies.tie_margin
        self._fraction = cfg.risk_fraction  # read on most bars
        self.counters = Counters()
        self.halt_events: deque[HaltEvent] = deque(maxlen=MAX_HALT_EVENTS)  # counters keep the totals
        self.fills: list[Fill] = []  # this run's fills (the caller decides whether to keep them)
        self._n = 0

    # -- the market analyst ----------------------------------------------------------------
    def observe(self, bar: Bar) -> Signal:
        """The analyst's feed: every strategy of the symbol sees the closed bar; the combined
        signal is what an analysis of the symbol would answer now (kept, and returned)."""
        sym = bar.symbol
        on_bar = self.on_bar.get(sym) or self._models(sym)
        prices = bar.floats()  # open, high, low, close, volume: the live analyst's Candle.of(bar)
        self.closes[sym] = prices[3]
        candle = _candle((sym, bar.ts, *prices))
        n = len(on_bar)
        if n == 1:
            sig = on_bar[0](candle)
        elif n == 2:  # the shipped strategies: no list comprehension (a frame of its own)
            sig = combine((on_bar[0](candle), on_bar[1](candle)), tie_margin=self._tie)
        else:
            sig = combine([f(candle) for f in on_bar], tie_margin=self._tie)
        self.signals[sym] = sig
        return sig

    def _models(self, symbol: str) -> list[Callable[[Candle], Signal]]:
        """The strategies of a symbol seen for the first time (fresh instances: they keep
        state); returns their `on_bar` methods."""
        if symbol not in self.traded:
            raise ValueError(f"a bar of {symbol!r} among the bars of {', '.join(sorted(self.traded))}")
        models = self.models[symbol] = list(self.config.for_symbol(symbol).values())
        if not models:
            raise ValueError(f"no strategy in the strategies file applies to {symbol}")
        on_bar = self.on_bar[symbol] = [m.on_bar for m in models]
        return on_bar

    # -- the orchestrator ------------------------------------------------------------------
    def step(self, bars: Sequence[Bar]) -> None:
        """One step of the timeline, as the orchestrator's `on_bars` handles a batch of bars:
        marks, the market day, PnL halts, then a run per traded symbol."""
        marks = self.ledger.marks  # Ledger.mark, without the call
        if len(bars) == 1:  # one symbol's bar (every step of a one-symbol backtest)
            latest: Sequence[Bar] = bars
            bar = bars[0]
            sig: Signal | None = self.observe(bar)
            marks[bar.symbol] = bar.close
            now = bar.ts
        else:
            for bar in bars:
                self.observe(bar)
                marks[bar.symbol] = bar.close
            by_symbol = {b.symbol: b for b in bars}  # the latest bar of each symbol
            latest, now, sig = list(by_symbol.values()), max(b.ts for b in bars), None
        self._eq = None
        self.counters.steps += 1
        if not self.day_start <= now < self.day_end:
            self.roll_day(now)
        self.check_auto_halt(now)
        if not self.halt.halted:
            if sig is not None:  # one bar: its signal is the one just made
                if bar.symbol in self.traded:
                    self.run(bar, now, sig)
                return
            for bar in latest:
                if bar.symbol in self.traded:
                    self.run(bar, now, self.signals.get(bar.symbol) or hold("combined", "no analysis"))

    def equity(self) -> Decimal:
        """`Ledger.snapshot().equity`, computed the same way without the rest of the snapshot;
        kept until the next mark or fill."""
        eq = self._eq
        if eq is None:
            eq = self._eq = self.ledger.cash + self.ledger.exposure()
        return eq

    def roll_day(self, now: datetime) -> None:
        new = tday.rollover(self.day, now=now, equity=self.equity(), defaults=self.defaults)
        if new is None:
            return
        first = self.day is None
        self.day_start = datetime.combine(now.date(), datetime.min.time(), now.tzinfo)
        self.day, self.day_end = new, self.day_start + ONE_DAY
        self._bounds = None
        self.overridden.clear()
        if not first and policy.clears_at_rollover(self.halt):
            reason = self.halt.reason or ""
            self.halt = policy.unhalt(self.halt, pnl_pct=ZERO, limits=new.limits, force=True)
            self.halt_events.append(HaltEvent(now, "unhalt", f"rollover_clear:{reason}", new.date))

    def check_auto_halt(self, now: datetime) -> None:
        """`halt.automatic` on today's PnL, as the orchestrator does after marks and fills.
        Skipped only when equity is safely inside the day's band (a margin of 1e-9 around the
        target and the loss limit), where `automatic` cannot answer anything but None."""
        day = self.day
        if day is None or self.halt.halted:
            return
        equity = self._eq
        if equity is None:
            equity = self.equity()
        bounds = self._bounds
        if bounds is None:
            start, lim = day.start_equity, day.limits
            bounds = self._bounds = (
                start * (1 - lim.loss_limit_pct / 100) * (1 + MARGIN),
                start * (1 + lim.target_pct / 100) * (1 - MARGIN),
            )
        if bounds[0] < equity < bounds[1]:
            return
        pct = day.percent(equity)
        decision = policy.pnl_limits(self.halt, pnl_pct=pct, limits=day.limits, overridden=frozenset(self.overridden))
        if decision is not None:
            reason = decision.reason
            note = f"PnL {pct.quantize(Decimal('0.01'))}% on {day.date}"
            self.halt = policy.halt(self.halt, reason=reason, mode=HaltMode.HALT, actor="system", note=note, now=now)
            self.counters.halts[reason] = self.counters.halts.get(reason, 0) + 1
            self.halt_events.append(HaltEvent(now, "halt", reason, day.date))

    def run(self, bar: Bar, now: datetime, sig: Signal) -> None:
        """An automatic run on the symbol's analysis `sig`: sizing → halt check → risk → paper
        fill → ledger."""
        counters = self.counters
        counters.runs += 1
        side, price = sig.side, bar.close
        if side is None or not price:
            counters.holds += 1
            return
        sym = bar.symbol
        pos = self.ledger.positions.get(sym)  # Ledger.qty_of, without the call
        held = pos.qty if pos is not None else ZERO
        if side == "sell" and not held:  # size_order's answer without asking: nothing to sell
            counters.holds += 1
            return
        equity = self._eq
        if equity is None:
            equity = self.equity()
        qty = size_order(
            side=side, equity=equity, price=price, confidence=sig.confidence, risk_fraction=self._fraction, held=held
        )
        if qty <= ZERO:
            counters.holds += 1
            return
        halt = self.halt
        # `allows` passes everything while not halted (the run's usual state): no call then
        if halt.halted and not policy.allows(halt, side=side, position_qty=held, qty=qty):
            counters.reject("halted")
            return
        # the request id only names a reservation, and an approved order fills at once here:
        # the order id is given to fills alone; not manual, no live day cap
        req = _request(("bt", sym, side, qty, price, sig.confidence, False, ""))
        why = risk.evaluate(req, rules=self.rules, halt=halt, ledger=self.ledger, book=self.book, now=now)
        if why is None:
            why = self.execute(bar, sig, qty, now)
        if why is not None:
            counters.reject(why)

    # -- the trade executor's paper engine, then the orchestrator's on_status ---------------
    def execute(self, bar: Bar, sig: Signal, qty: Decimal, now: datetime) -> str | None:
        side = sig.side
        if side is None:  # a hold is never executed
            raise ValueError(f"{bar.symbol}: a signal without a side cannot be executed")
        cfg, ledger, sym = self.cfg, self.ledger, bar.symbol
        fill = paper_fill(side, qty, bar.close, slippage_bps=cfg.slippage_bps, fee_bps=cfg.fee_bps)
        why = affordable(side, qty, fill, cash=ledger.cash, held=ledger.qty_of(sym))
        if why:
            return why
        price, fee = fill
        self._n += 1
        oid = f"bt-{self._n}"
        ledger.apply(_fill((oid, sym, side, qty, price, fee, WHOLE)))
        self._eq = None
        self.fills.append(_bt_fill((oid, bar.ts, sym, side, qty, price, fee, sig.strategy, sig.confidence, sig.reason)))
        self.check_auto_halt(now)
        return None
