"""The portfolio ledger: cash, positions at average cost, realized PnL and fees, from fills and
mark prices. Pure and synchronous; every agent that needs positions keeps one, fed from the same
streams, and the same class recomputes PnL from the fills table for checks and restores.

Spot only: a position never goes below zero (the paper engine refuses what holdings can't cover).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

ZERO = Decimal("0")


@dataclass(slots=True)
class Position:
    qty: Decimal = ZERO
    avg_cost: Decimal = ZERO


# The fill id of an order filled in one piece: a paper fill, a backtest's, a fill row from before
# fills were recorded per trade, an exec.status message without `fills`. A live order's fills are
# the exchange's trades, each with the exchange's trade id.
WHOLE = "order"


class FillRecord(NamedTuple):
    """One fill (immutable; a named tuple because a backtest makes many). An order has one or
    more, told apart by `fill_id` (the exchange's trade id; `WHOLE` for an order filled at once)."""

    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fill_id: str = WHOLE


@dataclass(frozen=True, slots=True)
class PnlSnapshot:
    cash: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    equity: Decimal
    exposure: Decimal


SEEN_KEEP = 100_000  # fills remembered against a repeat (a bound on memory)


class RecentKeys:
    """A set that remembers only the last `capacity` keys added. A repeat of a fill comes from a
    redelivery, within seconds or minutes; older repeats are stopped before the ledger (the
    consumers' idempotency keys, the unique (order id, fill id) of the `fills` table)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: set[Hashable] = set()
        self._order: deque[Hashable] = deque()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable) -> None:
        self.insert(key)

    def insert(self, key: Hashable) -> bool:
        """Add `key`; False when it was already there (a repeat)."""
        keys = self._keys
        if key in keys:
            return False
        keys.add(key)
        order = self._order
        order.append(key)
        if len(order) > self.capacity:
            keys.discard(order.popleft())
        return True


@dataclass
class Ledger:
    starting_cash: Decimal
    cash: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    seen: RecentKeys = field(default_factory=lambda: RecentKeys(SEEN_KEEP))

    def __post_init__(self) -> None:
        if not self.cash:
            self.cash = self.starting_cash

    def apply(self, f: FillRecord) -> bool:
        """Apply a fill once (keyed by order id and fill id); returns False for a repeat."""
        if not self.seen.insert((f.order_id, f.fill_id)):  # one call: `in` on a Python class costs a slot lookup
            return False
        pos = self.positions.get(f.symbol)
        if pos is None:
            pos = self.positions[f.symbol] = Position()
        notional = f.qty * f.price
        if f.side == "buy":
            total = pos.qty + f.qty
            pos.avg_cost = (pos.qty * pos.avg_cost + notional) / total if total else ZERO
            pos.qty = total
            self.cash -= notional
        else:
            self.realized += (f.price - pos.avg_cost) * f.qty
            pos.qty -= f.qty
            if pos.qty <= 0:
                pos.qty, pos.avg_cost = ZERO, ZERO
            self.cash += notional
        self.cash -= f.fee
        self.fees += f.fee
        self.marks.setdefault(f.symbol, f.price)
        return True

    def mark(self, symbol: str, price: Decimal) -> None:
        self.marks[symbol] = price

    def price_of(self, symbol: str) -> Decimal | None:
        return self.marks.get(symbol)

    def qty_of(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.qty if pos else ZERO

    def exposure(self) -> Decimal:
        """`snapshot().exposure` alone (the risk manager asks for it on every buy)."""
        exposure, marks = ZERO, self.marks
        for sym, pos in self.positions.items():
            qty = pos.qty
            if qty:
                exposure += marks.get(sym, pos.avg_cost) * qty
        return exposure

    def snapshot(self) -> PnlSnapshot:
        unrealized = ZERO
        exposure = ZERO
        for sym, pos in self.positions.items():
            if pos.qty:
                px = self.marks.get(sym, pos.avg_cost)
                unrealized += (px - pos.avg_cost) * pos.qty
                exposure += px * pos.qty
        equity = self.cash + exposure
        return PnlSnapshot(self.cash, self.realized, unrealized, self.fees, equity, exposure)

    def holdings(self) -> list[dict[str, Any]]:
        out = []
        for sym, pos in sorted(self.positions.items()):
            if pos.qty:
                px = self.marks.get(sym, pos.avg_cost)
                out.append(
                    {
                        "symbol": sym,
                        "qty": pos.qty,
                        "avgCost": pos.avg_cost,
                        "mark": px,
                        "value": px * pos.qty,
                        "unrealized": (px - pos.avg_cost) * pos.qty,
                    }
                )
        return out


def replay(starting_cash: Decimal, fills: Iterable[FillRecord], marks: dict[str, Decimal]) -> Ledger:
    """Recompute a ledger from scratch: the reference the live views are checked against."""
    ledger = Ledger(starting_cash)
    for f in fills:
        ledger.apply(f)
    ledger.marks.update(marks)
    return ledger


def pnl_percent(equity: Decimal, start_equity: Decimal) -> Decimal:
    if start_equity <= 0:
        return ZERO
    return (equity - start_equity) / start_equity * 100
