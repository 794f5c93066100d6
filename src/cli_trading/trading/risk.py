"""Pre-trade risk rules: pure, synchronous, one verdict per request with a reason string.

Rules, in order (the first that fails names the rejection):
halted, halt_state_unknown, min_confidence, trading_window, side_blocked, (live mode: unknown_market,
min_amount, min_notional, cap_order_notional, cap_daily_notional, cap_open_orders), max_order_notional,
insufficient_cash, insufficient_position, max_position_notional, max_total_exposure,
max_orders_per_minute.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

from cli_trading.exchanges.markets import MarketRules
from cli_trading.halt.policy import allows
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import ZERO, Ledger
from cli_trading.trading.risk_rules import RiskFile as RiskFile  # the rules' models, re-exported
from cli_trading.trading.risk_rules import RiskRules as RiskRules

ONE_MINUTE = timedelta(minutes=1)  # the rate rule's window


class Request(NamedTuple):
    """A pre-trade request (immutable; a named tuple because the backtest makes one per bar)."""

    request_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    confidence: float
    manual: bool = False
    day: str = ""  # the UTC trading day it is decided on (the daily cap)


@dataclass
class RiskBook:
    """What the risk manager knows beyond the ledger: reservations for approved orders not yet
    settled (less what a partly filled one has filled: that is in the ledger), and the recent
    approvals for the rate rule. The totals are kept as reservations
    come and go (exact: Decimal), so a decision costs the same with 5 or 500 orders in flight."""

    reserved: dict[str, Request] = field(default_factory=dict)
    reserved_cash: Decimal = ZERO  # by buys
    _held: dict[str, Decimal] = field(default_factory=dict)  # quantity by sells, per symbol
    _notional: dict[str, Decimal] = field(default_factory=dict)  # signed, per symbol
    _total_notional: Decimal = ZERO
    recent: deque[datetime] = field(default_factory=deque)
    _day: dict[str, Decimal] = field(default_factory=dict)  # notional approved per UTC day (live cap)
    _filled: dict[str, Decimal] = field(default_factory=dict)  # filled so far, per partly filled order

    def day_notional(self, day: str) -> Decimal:
        return self._day.get(day, ZERO)

    def add_day(self, day: str, notional: Decimal) -> None:
        self._day = {day: self._day.get(day, ZERO) + notional}  # only today's total is kept

    def reserve(self, r: Request) -> None:
        self.release(r.request_id)  # the same request reserved twice counts once
        self.reserved[r.request_id] = r
        self._apply(r, 1)

    def release(self, request_id: str) -> None:
        r = self.reserved.pop(request_id, None)
        self._filled.pop(request_id, None)
        if r is not None:
            self._apply(r, -1)

    def fill(self, request_id: str, filled: Decimal) -> None:
        """An approved order still open has filled `filled` so far (cumulative): that part is in
        the ledger now (position, cash), so its reservation goes; the rest stays reserved (at the
        request's price) until the order ends. A report of no more than was seen changes nothing."""
        r = self.reserved.get(request_id)
        seen = self._filled.get(request_id, ZERO)
        if r is None or filled <= seen:
            return
        part = min(filled - seen, r.qty)
        self._apply(r._replace(qty=part), -1)
        self.reserved[request_id] = r._replace(qty=r.qty - part)  # still an open order (open-order cap)
        self._filled[request_id] = filled

    def _apply(self, r: Request, sign: int) -> None:
        notional = r.qty * r.price * sign
        if r.side == "buy":
            self.reserved_cash += notional
        else:
            self._held[r.symbol] = self._held.get(r.symbol, ZERO) + r.qty * sign
            notional = -notional
        self._notional[r.symbol] = self._notional.get(r.symbol, ZERO) + notional
        self._total_notional += notional

    def held_qty(self, symbol: str) -> Decimal:
        return self._held.get(symbol, ZERO)

    def pending_notional(self, symbol: str | None = None) -> Decimal:
        return self._total_notional if symbol is None else self._notional.get(symbol, ZERO)


@dataclass(frozen=True, slots=True)
class LiveCaps:
    """Live mode's caps (0 = none): notional per order and per UTC day, orders open at once."""

    order_notional: Decimal = ZERO
    daily_notional: Decimal = ZERO
    open_orders: int = 0


@dataclass(frozen=True, slots=True)
class Venue:
    """What the exchange says, in live mode: the market's rules and the quantity held."""

    caps: LiveCaps
    market: MarketRules | None = None
    held: Decimal | None = None  # the base asset held at the exchange (None: not known yet)


def venue_refusal(r: Request, v: Venue, book: RiskBook) -> str | None:
    """The exchange's minimums, then the caps: the reason names which."""
    if v.market is None:
        return "unknown_market"
    why = v.market.refusal(r.qty, r.price)
    if why:
        return why
    if r.side == "sell":  # spot: a sell only reduces what is held; a flatten must never hit a cap
        return None
    notional = r.qty * r.price
    if v.caps.order_notional and notional > v.caps.order_notional:
        return "cap_order_notional"
    if v.caps.daily_notional and book.day_notional(r.day) + notional > v.caps.daily_notional:
        return "cap_daily_notional"
    if v.caps.open_orders and len(book.reserved) >= v.caps.open_orders:
        return "cap_open_orders"
    return None


def evaluate(
    r: Request,
    *,
    rules: RiskRules,
    halt: HaltState | None,
    ledger: Ledger,
    book: RiskBook,
    now: datetime,
    venue: Venue | None = None,
) -> str | None:
    """The rejection reason, or None to approve. Does not reserve: the caller does on approval.
    In live mode (`venue`), the held quantity is the exchange's, and its minimums and the live
    caps come first."""
    symbol, side, qty = r.symbol, r.side, r.qty
    pos = ledger.positions.get(symbol)  # Ledger.qty_of, without the call (most bars ask)
    own = pos.qty if pos is not None else ZERO
    held = venue.held if venue is not None and venue.held is not None else own
    position = held - book._held.get(symbol, ZERO)  # RiskBook.held_qty
    if halt is None:
        return "halt_state_unknown"
    if halt.halted and not allows(halt, side=side, position_qty=position, qty=qty):  # passes all unless halted
        return "halted"
    if not (r.manual and rules.manual_bypasses_confidence) and r.confidence < rules.min_confidence:
        return "min_confidence"
    window = rules.trading_window_utc
    if window and not _in_window(now.time(), *window):
        return "trading_window"
    if side in rules.blocked_sides:
        return "side_blocked"
    if venue is not None and (why := venue_refusal(r, venue, book)):
        return why
    notional = qty * r.price
    if side == "buy":
        if notional > rules.max_order_notional:  # a sell only reduces exposure (spot)
            return "max_order_notional"
        if ledger.cash - book.reserved_cash < notional:
            return "insufficient_cash"
        value = own * (ledger.marks.get(symbol) or r.price)  # Ledger.price_of
        if value + book._notional.get(symbol, ZERO) + notional > rules.max_position_notional:  # pending_notional
            return "max_position_notional"
        if ledger.exposure() + book._total_notional + notional > rules.max_total_exposure:
            return "max_total_exposure"
    elif position < qty:
        return "insufficient_position"
    return _rate(book, rules, now)


def _rate(book: RiskBook, rules: RiskRules, now: datetime) -> str | None:
    while book.recent and now - book.recent[0] > ONE_MINUTE:
        book.recent.popleft()
    if len(book.recent) >= rules.max_orders_per_minute:
        return "max_orders_per_minute"
    book.recent.append(now)
    return None


def _in_window(t: time, start: time, end: time) -> bool:
    return start <= t <= end if start <= end else t >= start or t <= end
