"""The simulator as a service: the state in memory, every change written through to the store
before the answer, the engine's decisions applied. Routes call these methods and nothing else.

Everything runs on the event loop without awaiting in between, so one request's change is never
interleaved with another's (no locks needed)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import structlog

from cli_trading.exchanges.sim import engine, views
from cli_trading.exchanges.sim.engine import Balance, Book, Fill, Order
from cli_trading.exchanges.sim.errors import (
    DUPLICATE_ORDER,
    INVALID_SYMBOL,
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    BinanceError,
    bad_param,
    bad_value,
    error,
)
from cli_trading.exchanges.sim.faults import Faults
from cli_trading.exchanges.sim.markets import DEFAULT_MARKETS, Market, check_notional, check_price, check_qty
from cli_trading.exchanges.sim.store import Store
from cli_trading.exchanges.sim.tape import Clock, Tapes

CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
log = structlog.get_logger("exchange-sim")
DEFAULT_SPEED = 60.0
DEFAULT_BALANCES = {"USDT": Decimal("10000"), "BTC": Decimal("0.1"), "ETH": Decimal("2")}


@dataclass
class SimConfig:
    api_key: str = "sim-key"
    api_secret: str = "sim-secret"  # noqa: S105 - the simulator's public test credential
    markets: tuple[Market, ...] = DEFAULT_MARKETS
    book: Book = field(default_factory=Book)
    speed: float | None = None  # None: as saved in the data dir, else DEFAULT_SPEED
    balances: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    request_limit: int = 6000  # requests per minute before 429
    candles: Path | None = None  # your own candle files instead of the shipped ones


def _dec(params: dict[str, str], name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise bad_param(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise bad_value(name) from None
    if not value.is_finite() or value <= 0:
        raise bad_value(name)
    return value


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_value(name) from None


class SimExchange:
    def __init__(self, config: SimConfig, store: Store, faults: Faults, now: float) -> None:
        self.config, self.store, self.faults = config, store, faults
        self.book = config.book
        self.markets = {m.symbol: m for m in config.markets}
        self.tapes = Tapes({m.symbol: m.series for m in config.markets}, config.candles)
        loaded = store.load()
        self.orders: dict[int, Order] = {o.order_id: o for o in loaded.orders}
        self.by_client: dict[str, Order] = {o.client_id: o for o in loaded.orders}
        self.fills: list[Fill] = loaded.fills
        self.wallet = loaded.wallet
        meta = loaded.meta
        clock = meta.get("clock", {"data_time": self.tapes.default_start(), "speed": DEFAULT_SPEED})
        speed = config.speed if config.speed is not None else float(clock["speed"])
        self.clock = Clock(now, float(clock["data_time"]), speed)
        self.scales = {s: Decimal(v) for s, v in meta.get("scales", {}).items()}
        self.next_order_id = int(meta.get("next_order_id", 1))
        self.next_trade_id = int(meta.get("next_trade_id", 1))
        self.last_price: dict[str, Decimal] = {}
        self._saved_clock: tuple[float, float] = (self.clock.anchor_data, self.clock.speed)
        self.restored = not loaded.fresh
        if loaded.fresh:
            self.wallet = {a: Balance(v) for a, v in config.balances.items()}
            self._save(now, wallet=True)

    # --- prices and persistence -------------------------------------------------------------

    def market(self, symbol: str | None) -> Market:
        if not symbol:
            raise bad_param("symbol")
        m = self.markets.get(symbol)
        if m is None:
            raise error(INVALID_SYMBOL)
        return m

    def price(self, symbol: str, now: float) -> Decimal:
        raw = Decimal(repr(self.tapes.price(symbol, self.clock.data_time(now))))
        m = self.markets[symbol]
        return max(m.tick_size, m.round_price(raw * self.scales.get(symbol, Decimal(1))))

    def window(self, symbol: str, a: float, b: float) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(open, high, low, close, volume) over wall time [a, b], scaled and on the tick grid."""
        o, h, low, c, v = self.tapes.window(symbol, self.clock.data_time(a), self.clock.data_time(b))
        m, scale = self.markets[symbol], self.scales.get(symbol, Decimal(1))
        px = [max(m.tick_size, m.round_price(Decimal(repr(x)) * scale)) for x in (o, h, low, c)]
        return px[0], px[1], px[2], px[3], Decimal(repr(v)).quantize(m.step_size)

    def _trade_id(self) -> int:
        self.next_trade_id += 1
        return self.next_trade_id - 1

    def _meta(self, now: float) -> dict[str, Any]:
        return {
            "next_order_id": self.next_order_id,
            "next_trade_id": self.next_trade_id,
            "clock": {"data_time": self.clock.data_time(now), "speed": self.clock.speed},
            "scales": {s: str(v) for s, v in self.scales.items()},
        }

    def _save(
        self, now: float, *, orders: list[Order] | None = None, fills: list[Fill] | None = None, wallet: bool = False
    ) -> None:
        meta = self._meta(now)
        self.store.save(orders=orders or (), fills=fills or (), wallet=self.wallet if wallet else None, meta=meta)
        self._remember_clock(meta)

    # --- orders -----------------------------------------------------------------------------

    def prepare(self, params: dict[str, str], now: float) -> tuple[Order, Market, Decimal]:
        """The order `params` describe, checked as Binance checks it (also POST /order/test)."""
        m = self.market(params.get("symbol"))
        order = self._new_order(params, m, now)
        if order.client_id in self.by_client:
            raise error(DUPLICATE_ORDER)
        price = self.price(m.symbol, now)
        self._check_filters(order, m, price)
        return order, m, price

    def place(self, params: dict[str, str], now: float) -> tuple[Order, list[Fill]]:
        order, m, price = self.prepare(params, now)
        if self.faults.rejects():
            raise BinanceError(-2010, "Order rejected by the exchange-sim fault plan.")
        fills = engine.place(order, m, self.book, price, self.wallet, self._trade_id, int(now * 1000))
        self.next_order_id += 1
        self.orders[order.order_id] = order
        self.by_client[order.client_id] = order
        self.fills.extend(fills)
        self._save(now, orders=[order], fills=fills, wallet=True)
        log.info("order_placed", **_summary(order), fills=len(fills))
        return order, fills

    def _new_order(self, params: dict[str, str], m: Market, now: float) -> Order:
        side, otype = params.get("side", ""), params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise bad_param("side") if not side else BinanceError(-1117, "Invalid side.")
        if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise bad_param("type") if not otype else BinanceError(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or "sim" + secrets.token_hex(8)
        if not CLIENT_ID.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        quote_qty = _dec(params, "quoteOrderQty", required=False) if otype == "MARKET" else None
        if quote_qty is not None and side == "SELL":
            raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        qty = None if quote_qty is not None else _dec(params, "quantity")
        price = Decimal(0)
        tif = "GTC"
        if otype != "MARKET":
            price = _dec(params, "price") or Decimal(0)
            tif = params.get("timeInForce") or ("GTC" if otype == "LIMIT_MAKER" else "")
            if tif not in ("GTC", "IOC", "FOK"):
                raise bad_param("timeInForce") if not tif else BinanceError(-1115, "Invalid timeInForce.")
        now_ms = int(now * 1000)
        return Order(
            self.next_order_id,
            client_id,
            m.symbol,
            side,
            otype,
            tif,
            qty or Decimal(0),
            price,
            quote_qty or Decimal(0),
            now_ms,
            now_ms,
        )

    def _check_filters(self, order: Order, m: Market, price: Decimal) -> None:
        if order.type != "MARKET":
            check_price(m, order.price)
            check_qty(m, order.qty)
            check_notional(m, order.qty, order.price, market_order=False)
        elif order.quote_qty:
            check_notional(m, m.floor_qty(order.quote_qty / price), price, market_order=True)
            check_qty(m, m.floor_qty(order.quote_qty / self.book.best(m, price, "BUY")))
        else:
            check_qty(m, order.qty)
            check_notional(m, order.qty, price, market_order=True)

    def find(self, params: dict[str, str]) -> Order:
        m = self.market(params.get("symbol"))
        order_id, client_id = _int(params, "orderId"), params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        found = self.orders.get(order_id) if order_id is not None else self.by_client.get(client_id or "")
        if found is None or found.symbol != m.symbol or (client_id and found.client_id != client_id):
            raise error(NO_SUCH_ORDER)
        return found

    def cancel(self, params: dict[str, str], now: float) -> dict[str, Any]:
        try:
            order = self.find(params)
        except BinanceError as exc:
            if exc.code == NO_SUCH_ORDER[0]:
                raise error(UNKNOWN_ORDER) from None
            raise
        if not order.is_open:
            raise error(UNKNOWN_ORDER)
        engine.cancel(order, self.markets[order.symbol], self.wallet, int(now * 1000))
        self._save(now, orders=[order], wallet=True)
        log.info("order_cancelled", **_summary(order))
        return views.cancelled(
            order, params.get("newClientOrderId") or "cancel" + secrets.token_hex(8), int(now * 1000)
        )

    def cancel_all(self, params: dict[str, str], now: float) -> list[dict[str, Any]]:
        m = self.market(params.get("symbol"))
        out = []
        for o in [o for o in self.orders.values() if o.symbol == m.symbol and o.is_open]:
            out.append(self.cancel({"symbol": m.symbol, "orderId": str(o.order_id)}, now))
        return out

    def open_orders(self, symbol: str | None) -> list[Order]:
        if symbol:
            self.market(symbol)
        return [o for o in self.orders.values() if o.is_open and (not symbol or o.symbol == symbol)]

    def all_orders(self, params: dict[str, str]) -> list[Order]:
        m = self.market(params.get("symbol"))
        from_id, start, end = _int(params, "orderId"), _int(params, "startTime"), _int(params, "endTime")
        limit = min(_int(params, "limit") or 500, 1000)
        picked = [
            o
            for o in self.orders.values()
            if o.symbol == m.symbol
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time_ms >= start)
            and (end is None or o.time_ms <= end)
        ]
        return picked[:limit] if from_id is not None or start is not None else picked[-limit:]

    def my_trades(self, params: dict[str, str]) -> list[Fill]:
        m = self.market(params.get("symbol"))
        order_id, from_id = _int(params, "orderId"), _int(params, "fromId")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        limit = min(_int(params, "limit") or 500, 1000)
        picked = [
            f
            for f in self.fills
            if f.symbol == m.symbol
            and (order_id is None or f.order_id == order_id)
            and (from_id is None or f.trade_id >= from_id)
            and (start is None or f.time_ms >= start)
            and (end is None or f.time_ms <= end)
        ]
        return picked[:limit] if from_id is not None or start is not None else picked[-limit:]

    # --- the market moving ------------------------------------------------------------------

    def move(self, symbol: str, now: float, *, depth: Decimal | None = None) -> list[Fill]:
        """One price move of `symbol`: resting orders the price crossed fill (up to the book's
        depth, or `depth` for this move)."""
        m = self.markets[symbol]
        price = self.price(symbol, now)
        self.last_price[symbol] = price
        resting = [o for o in self.orders.values() if o.symbol == symbol and o.is_open]
        book = self.book if depth is None else replace(self.book, depth=depth)
        fills = engine.match_resting(resting, m, book, price, self.wallet, self._trade_id, int(now * 1000))
        if fills:
            self.fills.extend(fills)
            touched = {f.order_id for f in fills}
            self._save(now, orders=[self.orders[i] for i in touched], fills=fills, wallet=True)
            for i in touched:
                log.info("resting_order_filled", **_summary(self.orders[i]), price=str(price))
        return fills

    def tick(self, now: float) -> list[Fill]:
        """The clock's work: every symbol whose price changed since the last tick moves."""
        fills: list[Fill] = []
        for symbol in self.markets:
            price = self.price(symbol, now)
            if symbol not in self.last_price:
                self.last_price[symbol] = price
            elif price != self.last_price[symbol]:
                fills += self.move(symbol, now)
        return fills

    def save_clock(self, now: float) -> None:
        """The clock's position, when it moved since it was last written (a frozen clock: never)."""
        position = (self.clock.data_time(now), self.clock.speed)
        if position != self._saved_clock:
            self._save(now)

    def _remember_clock(self, meta: dict[str, Any]) -> None:
        self._saved_clock = (meta["clock"]["data_time"], meta["clock"]["speed"])

    # --- behind the system's back (admin) ----------------------------------------------------

    def set_price(self, symbol: str, price: Decimal, now: float, *, depth: Decimal | None = None) -> list[Fill]:
        """The price set from outside: one move (with the clock frozen, the only one: a resting
        order bigger than the depth fills one part per call)."""
        m = self.market(symbol)
        raw = Decimal(repr(self.tapes.price(symbol, self.clock.data_time(now))))
        self.scales[symbol] = m.round_price(price) / raw
        log.info("admin_price_set", symbol=symbol, price=str(m.round_price(price)))
        fills = self.move(symbol, now, depth=depth)
        self._save(now)
        return fills

    def set_balance(self, asset: str, *, free: Decimal | None, delta: Decimal | None, now: float) -> Balance:
        bal = self.wallet.setdefault(asset, Balance())
        new = free if free is not None else bal.free + (delta or Decimal(0))
        if new < 0:
            raise ValueError(f"{asset} free balance would be {new}, below zero")
        bal.free = new
        log.info("admin_balance_set", asset=asset, free=str(new))
        self._save(now, wallet=True)
        return bal

    def set_clock(self, now: float, *, speed: float | None, advance_s: float) -> None:
        self.clock.reanchor(now, speed=speed, advance_s=advance_s)
        log.info("admin_clock_set", speed=self.clock.speed, advance_s=advance_s)
        self._save(now)


def _summary(o: Order) -> dict[str, Any]:
    return {
        "orderId": o.order_id,
        "clientOrderId": o.client_id,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.type,
        "status": o.status,
        "executedQty": str(o.executed),
        "origQty": str(o.qty),
    }
