"""The matching engine: pure functions over orders and a wallet, Decimal throughout, no I/O.

The book is a model, not other traders' orders: around the current price sit levels
`level_gap` apart (the first half a `spread` away), each holding `depth` worth of quote currency.
- A taker (market order, or a limit order that crosses on arrival) walks those levels: a big
  order gets several fills at worse and worse prices, as on a real book. A limit order walks
  only the levels its price allows; a GTC rest then waits in the book, IOC's rest expires, FOK
  fills entirely at once or expires with nothing.
- A resting limit order fills at its own price (maker) when the price crosses it, at most
  `depth` worth per side and per price move, best price first then oldest: an order bigger
  than the depth fills partially over several moves.
Commission is charged in the asset received (base on a buy, quote on a sell), as Binance does
without BNB. Funds of an open limit order are locked (quote for a buy at its limit price, base
for a sell) and released as it fills, or when it is cancelled or expires."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from cli_trading.exchanges.sim.errors import INSUFFICIENT_BALANCE, WOULD_TAKE, error
from cli_trading.exchanges.sim.markets import EIGHT, Market

ZERO = Decimal(0)
OPEN = ("NEW", "PARTIALLY_FILLED")
MAX_LEVELS = 2000  # a market order deeper than this many levels expires with what it got


@dataclass(slots=True)
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO


Wallet = dict[str, Balance]


@dataclass(slots=True)
class Order:
    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER
    tif: str  # GTC | IOC | FOK
    qty: Decimal
    price: Decimal  # the limit price; 0 for a market order
    quote_qty: Decimal  # a market buy by cost (quoteOrderQty); else 0
    time_ms: int
    update_ms: int = 0
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    locked: Decimal = ZERO  # funds still locked for the unfilled rest

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        dec = ("qty", "price", "quote_qty", "executed", "cum_quote", "locked")
        fields: dict[str, Any] = {k: Decimal(v) if k in dec else v for k, v in d.items()}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fill:
        dec = ("price", "qty", "quote_qty", "commission")
        fields: dict[str, Any] = {k: Decimal(v) if k in dec else v for k, v in d.items()}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Book:
    spread: Decimal = Decimal("0.0002")  # best ask - best bid, as a fraction of the price
    level_gap: Decimal = Decimal("0.0005")  # between consecutive levels, as a fraction of the price
    depth: Decimal = Decimal("5000")  # quote value per level, and per side and price move for resting orders
    fee_rate: Decimal = Decimal("0.001")  # maker and taker

    def best(self, m: Market, price: Decimal, side: str) -> Decimal:
        """Best ask (side BUY: what a buyer pays) or best bid (SELL), on the tick grid."""
        half = price * self.spread / 2
        rounding = ROUND_CEILING if side == "BUY" else ROUND_FLOOR
        edge = price + half if side == "BUY" else price - half
        return max(m.tick_size, (edge / m.tick_size).to_integral_value(rounding) * m.tick_size)

    def levels(self, m: Market, price: Decimal, side: str) -> Iterator[tuple[Decimal, Decimal]]:
        """(price, quantity) of the levels a taker on `side` walks, best first."""
        best = self.best(m, price, side)
        sign = 1 if side == "BUY" else -1
        for k in range(MAX_LEVELS):
            p = m.round_price(best * (1 + sign * k * self.level_gap))
            if p <= 0:
                return
            yield p, max(m.step_size, m.floor_qty(self.depth / p))


def crosses(order: Order, m: Market, book: Book, price: Decimal) -> bool:
    best = book.best(m, price, order.side)
    return best <= order.price if order.side == "BUY" else best >= order.price


def _walk(order: Order, m: Market, book: Book, price: Decimal) -> list[tuple[Decimal, Decimal]]:
    """The taker fills `order` would get now (by quantity, or by cost for a quoteOrderQty buy)."""
    plan: list[tuple[Decimal, Decimal]] = []
    left, spend = order.qty, order.quote_qty
    for lp, lq in book.levels(m, price, order.side):
        if order.type != "MARKET" and (lp > order.price if order.side == "BUY" else lp < order.price):
            break
        q = min(lq, m.floor_qty(spend / lp)) if order.quote_qty else min(left, lq)
        if q <= 0:
            break
        plan.append((lp, q))
        left, spend = left - q, spend - q * lp
        if (not order.quote_qty and left <= 0) or (order.quote_qty and q < lq):
            break
    return plan


def _bal(wallet: Wallet, asset: str) -> Balance:
    return wallet.setdefault(asset, Balance())


def _fill(
    order: Order,
    m: Market,
    book: Book,
    wallet: Wallet,
    price: Decimal,
    qty: Decimal,
    *,
    maker: bool,
    trade_id: int,
    now_ms: int,
) -> Fill:
    base, quote = _bal(wallet, m.base), _bal(wallet, m.quote)
    gross = price * qty
    last = order.executed + qty >= order.qty
    if order.side == "BUY":
        if order.type == "MARKET":
            quote.free -= gross
        else:
            release = order.locked if last else qty * order.price
            order.locked -= release
            quote.locked -= release
            quote.free += release - gross
        fee, fee_asset = (qty * book.fee_rate).quantize(EIGHT, ROUND_HALF_UP), m.base
        base.free += qty - fee
    else:
        if order.type == "MARKET":
            base.free -= qty
        else:
            order.locked -= qty
            base.locked -= qty
        fee, fee_asset = (gross * book.fee_rate).quantize(EIGHT, ROUND_HALF_UP), m.quote
        quote.free += gross - fee
    order.executed += qty
    order.cum_quote += gross
    order.update_ms = now_ms
    order.status = "FILLED" if last else "PARTIALLY_FILLED"
    return Fill(
        trade_id, order.order_id, order.symbol, price, qty, gross, fee, fee_asset, now_ms, order.side == "BUY", maker
    )


def place(
    order: Order, m: Market, book: Book, price: Decimal, wallet: Wallet, next_trade_id: Callable[[], int], now_ms: int
) -> list[Fill]:
    """Accept `order` at market price `price`: check funds, lock, take what crosses now.
    Raises BinanceError (nothing changed) when Binance would refuse it."""
    if order.type == "LIMIT_MAKER" and crosses(order, m, book, price):
        raise error(WOULD_TAKE)
    plan = [] if order.type == "LIMIT_MAKER" else _walk(order, m, book, price)
    if order.quote_qty:
        order.qty = sum((q for _, q in plan), ZERO)
    _check_funds(order, m, wallet, plan)
    if order.type != "MARKET":
        order.locked = order.qty * order.price if order.side == "BUY" else order.qty
        bal = _bal(wallet, m.quote if order.side == "BUY" else m.base)
        bal.free -= order.locked
        bal.locked += order.locked
        if order.tif == "FOK" and sum((q for _, q in plan), ZERO) < order.qty:
            plan = []
    fills = [_fill(order, m, book, wallet, p, q, maker=False, trade_id=next_trade_id(), now_ms=now_ms) for p, q in plan]
    order.update_ms = now_ms
    if order.is_open and (order.type == "MARKET" or order.tif in ("IOC", "FOK")):
        _end(order, m, wallet, "EXPIRED", now_ms)
    return fills


def _check_funds(order: Order, m: Market, wallet: Wallet, plan: list[tuple[Decimal, Decimal]]) -> None:
    if order.side == "BUY":
        need = order.qty * order.price if order.type != "MARKET" else sum((p * q for p, q in plan), ZERO)
        have = _bal(wallet, m.quote).free
    else:
        need, have = order.qty, _bal(wallet, m.base).free
    if need > have:
        raise error(INSUFFICIENT_BALANCE)


def _end(order: Order, m: Market, wallet: Wallet, status: str, now_ms: int) -> None:
    bal = _bal(wallet, m.quote if order.side == "BUY" else m.base)
    bal.locked -= order.locked
    bal.free += order.locked
    order.locked = ZERO
    order.status = status
    order.update_ms = now_ms


def cancel(order: Order, m: Market, wallet: Wallet, now_ms: int) -> None:
    _end(order, m, wallet, "CANCELED", now_ms)


def match_resting(
    orders: list[Order],
    m: Market,
    book: Book,
    price: Decimal,
    wallet: Wallet,
    next_trade_id: Callable[[], int],
    now_ms: int,
) -> list[Fill]:
    """One price move: resting orders the price crossed fill at their own price, at most the
    book's depth per side, best price first, then oldest."""
    budget = max(m.step_size, m.floor_qty(book.depth / price))
    buys = sorted(
        (o for o in orders if o.is_open and o.side == "BUY" and price <= o.price),
        key=lambda o: (-o.price, o.time_ms, o.order_id),
    )
    sells = sorted(
        (o for o in orders if o.is_open and o.side == "SELL" and price >= o.price),
        key=lambda o: (o.price, o.time_ms, o.order_id),
    )
    fills: list[Fill] = []
    for side in (buys, sells):
        left = budget
        for o in side:
            q = min(o.qty - o.executed, left)
            if q <= 0:
                break
            fills.append(_fill(o, m, book, wallet, o.price, q, maker=True, trade_id=next_trade_id(), now_ms=now_ms))
            left -= q
    return fills
