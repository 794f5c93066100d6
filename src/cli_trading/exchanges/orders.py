"""An order at an exchange, as we track it: its status, its fills, its fees. Pure.

ccxt reports an order as open / closed / canceled / expired / rejected with a cumulative `filled`;
we keep the exchange's own vocabulary (Binance: NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED,
EXPIRED) and never move an order backwards (an old answer arriving late changes nothing).
Each trade the exchange reports is a fill of its own, with the fee as charged (amount and
currency) and converted to the quote currency for PnL.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

ExchangeStatus = Literal["new", "partially_filled", "filled", "cancelled", "rejected", "expired"]
FINAL: frozenset[str] = frozenset({"filled", "cancelled", "rejected", "expired"})
_RANK = {"new": 0, "partially_filled": 1, "filled": 2, "cancelled": 2, "rejected": 2, "expired": 2}
ZERO = Decimal(0)


def _dec(v: Any) -> Decimal:
    return Decimal(str(v)) if v not in (None, "") else ZERO


def status_of(order: Mapping[str, Any]) -> ExchangeStatus:
    """The exchange status of a ccxt order structure."""
    raw = str(order.get("status") or "open").lower()
    filled = _dec(order.get("filled"))
    if raw == "open":
        return "partially_filled" if filled > 0 else "new"
    if raw == "closed":
        return "filled"
    if raw in ("canceled", "cancelled"):
        return "cancelled"
    if raw == "expired":
        return "expired"
    if raw == "rejected":
        return "rejected"
    return "new"


def fee_in_quote(
    cost: Decimal, currency: str | None, *, base: str, quote: str, price: Decimal, rates: Mapping[str, Decimal]
) -> Decimal | None:
    """A fee converted to the quote currency: as is when charged in the quote, at the trade's
    price when charged in the base, at a known rate (the asset's price in the quote, e.g. BNB)
    otherwise; None when no rate is known (the caller records the fee as charged and says so)."""
    if cost == 0 or not currency or currency == quote:
        return cost
    if currency == base:
        return cost * price
    rate = rates.get(currency)
    return cost * rate if rate is not None else None


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    qty: Decimal
    price: Decimal
    fee_charged: Decimal
    fee_currency: str | None
    fee_quote: Decimal  # the fee in the quote currency (0 with `fee_unpriced` when no rate is known)
    fee_unpriced: bool = False
    at: datetime | None = None  # when the exchange made the trade (None when it does not say)


def fills_of(trades: Iterable[Mapping[str, Any]], *, base: str, quote: str, rates: Mapping[str, Decimal]) -> list[Fill]:
    """ccxt trade structures → fills, in the exchange's order, one per trade id."""
    out: dict[str, Fill] = {}
    for t in trades:
        tid = str(t.get("id") or "")
        if not tid or tid in out:
            continue
        price, fee = _dec(t.get("price")), t.get("fee") or {}
        cost, cur = _dec(fee.get("cost")), fee.get("currency")
        quoted = fee_in_quote(cost, cur, base=base, quote=quote, price=price, rates=rates)
        at = datetime.fromtimestamp(int(t["timestamp"]) / 1000, UTC) if t.get("timestamp") else None
        out[tid] = Fill(tid, _dec(t.get("amount")), price, cost, cur, quoted or ZERO, quoted is None, at)
    return list(out.values())


@dataclass(frozen=True, slots=True)
class Tracked:
    """What we know of one order at the exchange."""

    order_id: str  # ours, also the client order id
    status: ExchangeStatus = "new"
    exchange_id: str | None = None
    filled: Decimal = ZERO
    fills: tuple[Fill, ...] = field(default_factory=tuple)
    rejection: str | None = None  # why the exchange refused it (or why we know it was never placed)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def fill_qty(self) -> Decimal:
        return sum((f.qty for f in self.fills), ZERO)

    @property
    def average(self) -> Decimal | None:
        q = self.fill_qty
        return sum((f.qty * f.price for f in self.fills), ZERO) / q if q else None

    @property
    def fee_quote(self) -> Decimal:
        return sum((f.fee_quote for f in self.fills), ZERO)

    def settled(self) -> bool:
        """Final, and every unit the exchange says filled is in our fills."""
        return self.final and self.fill_qty >= self.filled

    def update(self, order: Mapping[str, Any], fills: Iterable[Fill] = ()) -> Tracked:
        """Merge an answer from the exchange: the status never goes backwards, fills are added
        once by trade id, the filled amount only grows."""
        new = status_of(order)
        status = new if _RANK[new] >= _RANK[self.status] and not self.final else self.status
        known = {f.trade_id for f in self.fills}
        added = tuple(f for f in fills if f.trade_id not in known)
        return replace(
            self,
            status=status,
            exchange_id=str(order.get("id") or self.exchange_id or "") or None,
            filled=max(self.filled, _dec(order.get("filled"))),
            fills=self.fills + added,
        )


def unrecorded(t: Tracked, recorded: Collection[str]) -> tuple[Fill, ...]:
    """The order's trades not recorded in the ledger yet, in the exchange's order."""
    return tuple(f for f in t.fills if f.trade_id not in recorded)


def outcome(t: Tracked) -> tuple[Literal["filled", "rejected", "failed", "pending"], str | None]:
    """The pipeline's status (exec.status) of a tracked order, with a reason."""
    if not t.final:
        return "pending", f"{t.status} at the exchange"
    if t.fill_qty > 0:
        note = None if t.status == "filled" else f"{t.status} after a partial fill of {t.fill_qty}"
        return "filled", note
    return "rejected", f"{t.status} at the exchange"
