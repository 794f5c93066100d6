"""Reconciliation: what the exchange holds against what the ledger says it should. Pure.

Expected balance of an asset = its balance when live trading started (the baseline) + the net of
every trade recorded since (bought base, spent quote, fees as charged in their own currency).
Drift = exchange total − expected, valued in the quote currency. Open orders at the exchange that
the ledger does not know are drift too. A drift past the limit on consecutive checks (an order
between its fill and our record of it is not drift) calls for the halt `reconciliation_drift`:
the decision is the halt package's (`halt.policy.reconciliation_drift`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

ZERO = Decimal(0)


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
    unknown_orders: list[str]  # client order ids at the exchange the ledger does not know
    missing_orders: list[str]  # orders the ledger has open that the exchange does not list

    @property
    def value(self) -> Decimal:
        return sum((a.value for a in self.assets), ZERO)

    def to_api(self) -> dict[str, Any]:
        return {
            "driftQuote": str(self.value),
            "assets": [a.to_api() for a in self.assets],
            "unknownOrders": self.unknown_orders,
            "missingOrders": self.missing_orders,
        }


def order_drift(exchange_open: Iterable[str], ledger_open: Iterable[str]) -> tuple[list[str], list[str]]:
    ex, led = set(exchange_open), set(ledger_open)
    return sorted(ex - led), sorted(led - ex)


def detail(report: Report) -> str:
    """What drifted, for the halt's note (the first few assets)."""
    return "; ".join(f"{a.asset} {a.exchange} at the exchange vs {a.expected} in the ledger" for a in report.assets[:4])
