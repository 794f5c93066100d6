"""Reconciliation: what the exchange holds against what the ledger says it should. Pure.

Expected balance of an asset = its balance when live trading started (the baseline) + the net of
every trade recorded since (bought base, spent quote, fees as charged in their own currency).
Drift = exchange total − expected, valued in the quote currency. Open orders at the exchange that
the ledger does not know are cancelled, adopted or counted as drift, by the documented policy
(`unknown_order_action`). A drift past the limit on consecutive checks calls for the halt
`reconciliation_drift`: the decision is the halt package's (`halt.policy.reconciliation_drift`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from cli_trading.contracts import ADOPTED_PREFIX, OrderMsg
from cli_trading.exchanges.markets import client_order_id, our_symbol
from cli_trading.exchanges.orders import Fill

ZERO = Decimal(0)
UnknownPolicy = Literal["cancel", "adopt", "ignore"]  # EXCHANGE_UNKNOWN_ORDERS
UnknownAction = Literal["cancel", "adopt", "drift"]


class TradeRow(Protocol):
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee_charged: Decimal
    fee_currency: str | None


@dataclass(frozen=True, slots=True)
class AssetDrift:
    asset: str
    exchange: Decimal
    expected: Decimal
    value: Decimal  # |difference| in the quote currency (None-priced assets count at 0 and say so)
    priced: bool = True

    @property
    def diff(self) -> Decimal:
        return self.exchange - self.expected

    def to_api(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "exchange": str(self.exchange),
            "expected": str(self.expected),
            "diff": str(self.diff),
            "valueQuote": str(self.value),
            "priced": self.priced,
        }


def expected_balances(baseline: Mapping[str, Decimal], trades: Iterable[TradeRow]) -> dict[str, Decimal]:
    out = dict(baseline)
    for t in trades:
        base, quote = t.symbol.split("-", 1)
        sign = 1 if t.side == "buy" else -1
        out[base] = out.get(base, ZERO) + sign * t.qty
        out[quote] = out.get(quote, ZERO) - sign * t.qty * t.price
        if t.fee_currency and t.fee_charged:
            out[t.fee_currency] = out.get(t.fee_currency, ZERO) - t.fee_charged
    return out


def drifts(
    balances: Mapping[str, Decimal],
    expected: Mapping[str, Decimal],
    *,
    prices: Mapping[str, Decimal],
    quote: str,
    dust: Decimal = Decimal("1e-8"),
) -> list[AssetDrift]:
    """Per asset the ledger or the exchange knows; assets that agree (to dust) are left out."""
    out = []
    for asset in sorted(set(balances) | set(expected)):
        have, want = balances.get(asset, ZERO), expected.get(asset, ZERO)
        diff = abs(have - want)
        if diff <= dust:
            continue
        price = Decimal(1) if asset == quote else prices.get(asset)
        out.append(AssetDrift(asset, have, want, diff * price if price is not None else ZERO, price is not None))
    return out


@dataclass(frozen=True, slots=True)
class Report:
    assets: list[AssetDrift]
    unknown_orders: list[str]  # client order ids at the exchange the ledger does not know (drift)
    missing_orders: list[str]  # orders the ledger has open that the exchange does not list
    adopted_orders: list[str] = field(default_factory=list)  # unknown ones taken into the ledger now

    @property
    def value(self) -> Decimal:
        return sum((a.value for a in self.assets), ZERO)

    def to_api(self) -> dict[str, Any]:
        return {
            "driftQuote": str(self.value),
            "assets": [a.to_api() for a in self.assets],
            "unknownOrders": self.unknown_orders,
            "missingOrders": self.missing_orders,
            "adoptedOrders": self.adopted_orders,
        }


def order_drift(exchange_open: Iterable[str], ledger_open: Iterable[str]) -> tuple[list[str], list[str]]:
    ex, led = set(exchange_open), set(ledger_open)
    return sorted(ex - led), sorted(led - ex)


def detail(report: Report) -> str:
    """What drifted, for the halt's note (the first few assets)."""
    return "; ".join(f"{a.asset} {a.exchange} at the exchange vs {a.expected} in the ledger" for a in report.assets[:4])


# -- open orders the ledger does not know ----------------------------------------------------------
def unknown_order_action(order: Mapping[str, Any], policy: UnknownPolicy) -> UnknownAction:
    """What the documented policy does with an open order at the exchange the ledger does not know
    (placed by hand, left by another system): `cancel` cancels it; `adopt` takes it into the ledger
    as an order of ours when it can be followed (`adopted_order`); anything else is drift."""
    if policy == "cancel":
        return "cancel"
    if policy == "adopt" and adopted_order(order) is not None:
        return "adopt"
    return "drift"


def adopted_order(order: Mapping[str, Any]) -> OrderMsg | None:
    """The ccxt order structure as an order of ours: its client order id becomes our order id (the
    desk finds it again by that id, after a restart too). None when it cannot be followed that way
    (no client order id we would send as is) or is not a market or limit order of a positive amount."""
    cid = str(order.get("clientOrderId") or "")
    side, kind = order.get("side"), order.get("type")
    amount = Decimal(str(order.get("amount") or 0))
    if not cid or client_order_id(cid) != cid or side not in ("buy", "sell") or kind not in ("market", "limit"):
        return None
    if amount <= 0 or not order.get("symbol"):
        return None
    limit = Decimal(str(order["price"])) if kind == "limit" and order.get("price") else None
    tif = str(order.get("timeInForce") or "GTC").upper()
    return OrderMsg(
        orderId=cid,
        requestId=ADOPTED_PREFIX + cid,
        symbol=our_symbol(str(order["symbol"])),
        side=side,
        qty=amount,
        type=kind,
        price=limit,
        timeInForce=tif if tif in ("GTC", "IOC", "FOK") else "GTC",
    )


@dataclass(slots=True)
class _Trade:
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee_charged: Decimal
    fee_currency: str | None


def baseline_without(
    baseline: Mapping[str, Decimal], *, order: OrderMsg, fills: Iterable[Fill], taken_at: datetime | None
) -> dict[str, Decimal] | None:
    """An adopted order's trades made before the baseline was taken are in the baseline already (an
    order left by another system, partly filled before the first start; fills the operator accepted
    as drift): recorded now as ours, they would count twice. The baseline without them, or None
    when none is that old (or no baseline was taken yet). A trade whose time the exchange does not
    give counts as a new one."""
    if taken_at is None:
        return None
    old = [
        _Trade(order.symbol, order.side, f.qty, f.price, f.fee_charged, f.fee_currency)
        for f in fills
        if f.at is not None and f.at <= taken_at
    ]
    if not old:
        return None
    effect = expected_balances({}, old)
    return {a: baseline.get(a, ZERO) - effect.get(a, ZERO) for a in set(baseline) | set(effect)}
