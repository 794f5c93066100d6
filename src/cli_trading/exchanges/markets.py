"""Market rules of an exchange (precision, minimum amount, minimum notional), from ccxt's loaded
markets. Pure: the executor loads them, publishes them in Redis (`MARKETS_KEY`), and the risk
manager checks an order against them before anything is sent.

Binance's filters in ccxt's terms (TICK_SIZE precision mode): LOT_SIZE.stepSize →
`precision.amount`, PRICE_FILTER.tickSize → `precision.price`, LOT_SIZE.minQty → `limits.amount.min`,
MIN_NOTIONAL/NOTIONAL.minNotional → `limits.cost.min`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from cli_trading.exchanges.keys import MARKETS_KEY as MARKETS_KEY

_CLIENT_ID = re.compile(r"^[.A-Za-z:/0-9_-]{1,36}$")  # Binance's newClientOrderId


def client_order_id(order_id: str) -> str:
    """The client order id an order goes to the exchange with: our orderId when the exchange
    accepts it, else a digest of it (the same every time: an order is found again after a crash)."""
    if _CLIENT_ID.match(order_id):
        return order_id
    return "h-" + hashlib.sha256(order_id.encode()).hexdigest()[:34]


def ccxt_symbol(symbol: str) -> str:
    """Our symbols are BASE-QUOTE (BTC-USDT); ccxt's are BASE/QUOTE."""
    return symbol.replace("-", "/")


def our_symbol(symbol: str) -> str:
    return symbol.replace("/", "-")


def _dec(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    return Decimal(str(v))


def _step(v: Any, tick_size: bool) -> Decimal | None:
    """ccxt gives a precision either as a step (TICK_SIZE mode: 0.001) or as a number of decimal
    places (DECIMAL_PLACES mode: 3); both become a step."""
    d = _dec(v)
    if d is None or d <= 0:
        return None
    return d if tick_size else Decimal(1).scaleb(-int(d))


@dataclass(frozen=True, slots=True)
class MarketRules:
    symbol: str  # ours, BASE-QUOTE
    base: str
    quote: str
    amount_step: Decimal | None = None
    price_step: Decimal | None = None
    min_amount: Decimal | None = None
    min_notional: Decimal | None = None

    @classmethod
    def from_ccxt(cls, market: dict[str, Any], *, tick_size: bool = True) -> MarketRules:
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        return cls(
            symbol=our_symbol(market["symbol"]),
            base=market["base"],
            quote=market["quote"],
            amount_step=_step(precision.get("amount"), tick_size),
            price_step=_step(precision.get("price"), tick_size),
            min_amount=_dec((limits.get("amount") or {}).get("min")),
            min_notional=_dec((limits.get("cost") or {}).get("min")),
        )

    def to_json(self) -> dict[str, str | None]:
        return {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MarketRules:
        return cls(
            symbol=d["symbol"],
            base=d["base"],
            quote=d["quote"],
            amount_step=_dec(d.get("amount_step")),
            price_step=_dec(d.get("price_step")),
            min_amount=_dec(d.get("min_amount")),
            min_notional=_dec(d.get("min_notional")),
        )

    def amount(self, qty: Decimal) -> Decimal:
        """Rounded down to the lot step: never more than asked for (nor than is held)."""
        if self.amount_step is None:
            return qty
        return (qty / self.amount_step).to_integral_value(ROUND_DOWN) * self.amount_step

    def price(self, price: Decimal) -> Decimal:
        """Rounded to the nearest tick."""
        if self.price_step is None:
            return price
        return (price / self.price_step).to_integral_value(ROUND_HALF_UP) * self.price_step

    def refusal(self, qty: Decimal, price: Decimal) -> str | None:
        """Why the exchange would refuse this order (after rounding), or None."""
        amount = self.amount(qty)
        if amount <= 0 or (self.min_amount is not None and amount < self.min_amount):
            return "min_amount"
        if self.min_notional is not None and amount * price < self.min_notional:
            return "min_notional"
        return None
