"""Live execution through ccxt, done properly.

- Markets are loaded at start (and refreshed): amounts and prices go out at the market's
  precision, and an order under the minimum amount or notional is refused before sending.
- Our orderId is the client order id, so the exchange itself refuses a duplicate and we can ask
  it what became of an order whose answer we never got: an ambiguous result (timeout, 5xx,
  connection lost, a crash between send and answer) is resolved by querying the client order id,
  never by sending again blindly, and never recorded `failed` while it may still fill.
- Every order is tracked until the exchange states its final status; each trade is a fill with
  its fee as charged, converted to the quote currency.
- ccxt's rate limiter stays on, at no more than `max_rps` requests per second; a 429/418 backs
  off as long as the exchange says (Retry-After).
The pure parts live in `markets.py` and `orders.py`; this module does the I/O."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import structlog
from ccxt.base.errors import (
    AuthenticationError,
    BadSymbol,
    DDoSProtection,
    DuplicateOrderId,
    ExchangeError,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidOrder,
    NetworkError,
    OrderNotFound,
)

from cli_trading import metrics
from cli_trading.config import MIN_LIVE_RPS
from cli_trading.exchanges.base import ExecResult, OrderRequest, Received, received_log
from cli_trading.exchanges.markets import MarketRules, ccxt_symbol, client_order_id
from cli_trading.exchanges.orders import Tracked, fills_of, outcome

T = TypeVar("T")
log = structlog.get_logger("exchange")

# What the pipeline says for each definite refusal (the reason names it clearly)
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (AuthenticationError, "exchange_auth_failed"),
    (DuplicateOrderId, "duplicate_client_order_id"),
    (InsufficientFunds, "insufficient_funds"),
    (BadSymbol, "bad_symbol"),
    (InvalidOrder, "invalid_order"),
)


def refusal_reason(exc: Exception) -> str | None:
    """A definite refusal by the exchange (nothing was placed), or None when the order may exist."""
    text = str(exc)
    if isinstance(exc, InvalidOrder) and "Duplicate order" in text:
        return "duplicate_client_order_id"  # Binance -2010 "Duplicate order sent."
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, ExchangeError) and not isinstance(exc, ExchangeNotAvailable):
        return "exchange_error"  # a 4xx the exchange answered: it did not place the order
    return None


FEED_SHARE = 0.2  # of EXCHANGE_MAX_RPS, for the candle feed when the trade executor trades live


def rps_shares(max_rps: float, *, live: bool) -> tuple[float, float]:
    """(trade executor, candle feed) requests per second: two processes, each with its own
    limiter, whose sum stays under the one ceiling the exchange counts against the account/IP.

    Live, the shares are whole requests per second (each `Pacer` lets its share through in any
    second, rounded down to a whole number anyway): the ceiling's whole part, the feed 20 % of it
    (at least 1), the executor the rest, so that their sum never passes the ceiling, fractional or
    not. Under MIN_LIVE_RPS no split works: refused (the settings refuse it first). On paper only
    the feed asks the exchange: all of it."""
    if not live:
        return 0.0, max_rps
    whole = int(max_rps)
    if whole < MIN_LIVE_RPS:
        raise ValueError(f"EXCHANGE_MAX_RPS={max_rps:g}: live trading needs {MIN_LIVE_RPS} or more")
    feed = max(1, int(whole * FEED_SHARE))
    return float(whole - feed), float(feed)


def create_ccxt(exchange_id: str, api_key: str, secret: str, *, url: str | None, max_rps: float) -> Any:
    """A ccxt exchange object: spot only, the rate limiter on and no faster than `max_rps`, its
    REST URLs pointed at `url` when given (the simulator, or a proxy)."""
    klass = getattr(ccxt_async, exchange_id, None)
    if klass is None:
        raise ValueError(f"unknown ccxt exchange {exchange_id!r}")
    ex = klass(
        {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": 10_000,
            "options": {"fetchCurrencies": False, "fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"},
        }
    )
    ex.rateLimit = max(float(ex.rateLimit), 1000.0 / max_rps)
    pace(ex, max_rps)
    if url:
        ex.urls["api"] = _repoint(ex.urls["api"], url.rstrip("/"))
    return ex


class Pacer:
    """At most `rps` requests per second as the exchange counts them, whatever ccxt's limiter
    thinks each endpoint weighs (its weights let several light requests through at once) and
    however late a request reaches the exchange after leaving here.

    At most `burst` (rps, whole, at least 1) requests in any `window` (1 s, longer when rps < 1):
    a request counts from when it leaves here until `window` after its answer came back. The
    exchange sees a request somewhere between the two, so any `burst + 1` requests it saw are
    more than `window` apart: the ceiling holds at the exchange, not only here."""

    def __init__(self, rps: float) -> None:
        self.burst = max(1, int(rps))
        self.window = max(1.0, self.burst / rps)
        self.answered: deque[float] = deque()  # when the answers of the last window came back
        self.in_flight = 0
        self.lock = asyncio.Lock()  # waiters go in order
        self.changed = asyncio.Event()

    async def wait(self) -> None:
        """Take a slot; `done()` gives it back once the answer is in (or the request failed)."""
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.answered and self.answered[0] <= now - self.window:
                    self.answered.popleft()
                if self.in_flight + len(self.answered) < self.burst:
                    break
                self.changed.clear()
                left = self.answered[0] + self.window - now if self.answered else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), left)
            self.in_flight += 1

    def done(self) -> None:
        self.in_flight -= 1
        self.answered.append(time.monotonic())
        self.changed.set()


def pace(ex: Any, rps: float) -> None:
    """Every HTTP request of `ex` goes through one `Pacer` (ccxt sends them all through `fetch`)."""
    pacer = Pacer(rps)
    ex.raw_fetch = ex.fetch

    async def paced(*args: Any, **kw: Any) -> Any:
        await pacer.wait()
        try:
            return await ex.raw_fetch(*args, **kw)
        finally:
            pacer.done()

    ex.fetch = paced


def _repoint(v: Any, base: str) -> Any:
    if isinstance(v, dict):
        return {k: _repoint(x, base) for k, x in v.items()}
    if isinstance(v, str) and v.startswith("https://"):
        host_end = v.find("/", len("https://"))
        return base + (v[host_end:] if host_end > 0 else "")
    return v


class CcxtExchange:
    name = "ccxt"

    def __init__(
        self,
        exchange: Any,
        *,
        resolve_window_s: float = 15.0,
        poll_s: float = 0.5,
        give_up_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.received = received_log()
        self.markets: dict[str, MarketRules] = {}
        self.resolve_window_s, self.poll_s, self.sleep = resolve_window_s, poll_s, sleep
        self.backoffs = 0  # 429/418 answers honoured
        self.give_up_s = give_up_s  # EXCHANGE_RATE_LIMIT_GIVE_UP_S: an order refused this long is rejected
        # How an order refused with a 429/418 waits before it is looked up and sent again; the desk
        # makes it wait outside its books (nothing is at the exchange meanwhile: others go on).
        self.throttled_wait: Callable[[float], Awaitable[None]] = self._sleep
        # Whether an order refused with a 429/418 may still be sent after the wait (a halt came
        # meanwhile: it may not); the desk asks the halt state. None: always.
        self.may_resend: Callable[[OrderRequest], Awaitable[bool]] | None = None

    async def _sleep(self, seconds: float) -> None:
        await self.sleep(seconds)

    # -- plumbing ----------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, attempts: int = 8, **kw: Any) -> T:
        """One ccxt call; a 429/418 waits as long as the exchange says (Retry-After) and tries again."""
        for i in range(attempts):
            try:
                return await fn(*args, **kw)
            except DDoSProtection:
                self._backed_off(i, getattr(fn, "__name__", "request"))
                if i == attempts - 1:
                    raise
                await self.sleep(self._retry_after(i))
        raise AssertionError("unreachable")

    def _backed_off(self, attempt: int, what: str) -> None:
        """Count (metric, status) and log a 429/418 the exchange answered."""
        self.backoffs += 1
        metrics.EXCHANGE_BACKOFFS.inc()
        log.warning("rate limited by the exchange, backing off", request=what, waitS=self._retry_after(attempt))

    def _retry_after(self, attempt: int) -> float:
        headers: dict[str, Any] = getattr(self.exchange, "last_response_headers", None) or {}
        raw = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            return min(float(raw), 120.0) if raw is not None else min(0.5 * 2.0**attempt, 30.0)
        except ValueError:
            return min(0.5 * 2.0**attempt, 30.0)

    async def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        from ccxt.base.decimal_to_precision import TICK_SIZE

        loaded = await self.call(self.exchange.load_markets, reload)
        tick = getattr(self.exchange, "precisionMode", TICK_SIZE) == TICK_SIZE
        self.markets = {r.symbol: r for r in (MarketRules.from_ccxt(m, tick_size=tick) for m in loaded.values())}
        return self.markets

    def rules(self, symbol: str) -> MarketRules | None:
        return self.markets.get(symbol)

    async def balances(self) -> dict[str, Decimal]:
        """Total held per asset (free + locked in open orders)."""
        bal = await self.call(self.exchange.fetch_balance)
        return {k: Decimal(str(v)) for k, v in (bal.get("total") or {}).items() if v is not None}

    async def rates(self, assets: set[str], quote: str) -> dict[str, Decimal]:
        """Prices in the quote currency of assets fees were charged in (BNB…), when a market exists."""
        out: dict[str, Decimal] = {}
        for a in assets:
            sym = f"{a}-{quote}"
            if sym in self.markets:
                t = await self.call(self.exchange.fetch_ticker, ccxt_symbol(sym))
                if t.get("last") is not None:
                    out[a] = Decimal(str(t["last"]))
        return out

    # -- orders ------------------------------------------------------------------------------
    async def submit(self, order: OrderRequest) -> ExecResult:
        self.received.append(Received(order.order_id, time.time(), order.symbol, order.side))
        rules = self.rules(order.symbol)
        if rules is None:
            return ExecResult("rejected", reason=f"bad_symbol: {order.symbol} is not a market of the exchange")
        amount = rules.amount(order.qty)
        ref = order.limit_price or order.price
        why = rules.refusal(order.qty, ref) if ref > 0 else None
        if why:  # the risk manager checks this first; the exchange would refuse it anyway
            return ExecResult("rejected", reason=f"{why}: {amount} {order.symbol} at {ref}")
        t = await self.place(order, amount, rules)
        if t is None:
            return ExecResult("pending", reason="unresolved at the exchange (never re-sent)")
        return await self.result(t, order)

    async def place(self, order: OrderRequest, amount: Decimal, rules: MarketRules) -> Tracked | None:
        """Send once; on an ambiguous answer, find out by client order id what the exchange has.
        A 429/418 means the exchange did nothing: wait as told, look the order up, and send again
        only when the exchange says it has none, for as long as `give_up_s` allows (then
        `rejected`, reason `rate_limited`: every attempt was refused, nothing is at the exchange),
        and only while `may_resend` allows (a halt meanwhile: `rejected`, reason `halted`).
        A duplicate client order id means the exchange has the order already (ours: only we make
        such ids, e.g. sent before a crash or before the database was restored): it is followed,
        never sent again."""
        params: dict[str, Any] = {"newClientOrderId": client_order_id(order.order_id)}
        price = None
        if order.type == "limit":
            price = float(rules.price(order.limit_price or order.price))
            params["timeInForce"] = order.time_in_force
        sent_at = time.monotonic()
        give_up_at = sent_at + self.give_up_s
        while True:
            try:
                res = await self.exchange.create_order(
                    ccxt_symbol(order.symbol), order.type, order.side, float(amount), price, params
                )
                return Tracked(order.order_id).update(res)
            except DDoSProtection as exc:
                found = await self._after_throttle(order, give_up_at)
                if found is not None:
                    return found
                if time.monotonic() > give_up_at:  # the storm outlasted the give-up time: never placed
                    return _rejected(order.order_id, "rate_limited", exc)
                if self.may_resend is not None and not await self.may_resend(order):
                    log.warning("halted while rate limited: the order is not sent", orderId=order.order_id)
                    return _rejected(order.order_id, "halted", None)
            except Exception as exc:  # noqa: BLE001 - ccxt raises many types; sorted below
                reason = refusal_reason(exc)
                if reason == "duplicate_client_order_id":
                    return await self._duplicate(order, exc)
                if reason is not None:
                    return _rejected(order.order_id, reason, exc)
                log.warning("ambiguous order result, resolving by client order id", orderId=order.order_id,
                            error=f"{type(exc).__name__}: {str(exc)[:160]}")
                return await self.resolve(order.order_id, order.symbol, since=sent_at)

    async def _after_throttle(self, order: OrderRequest, give_up_at: float) -> Tracked | None:
        """A 429/418 answered an order: wait as long as the exchange says, then ask it whether it has
        the order (a throttled lookup waits again). None: it has none (or the budget is spent)."""
        attempt = 0
        self._backed_off(attempt, "create_order")
        wait = self._retry_after(attempt)
        while True:
            await self.throttled_wait(wait)
            if time.monotonic() > give_up_at:
                return None
            try:
                cid = {"clientOrderId": client_order_id(order.order_id)}
                res = await self.exchange.fetch_order("", ccxt_symbol(order.symbol), cid)
            except OrderNotFound:
                return None
            except DDoSProtection:  # the lookup is throttled too: wait again
                attempt += 1
                self._backed_off(attempt, "fetch_order")
                wait = self._retry_after(attempt)
            except NetworkError:  # not reachable now: ask again shortly
                wait = self.poll_s
            else:
                return Tracked(order.order_id).update(res)

    async def _duplicate(self, order: OrderRequest, exc: Exception) -> Tracked | None:
        """The exchange refused the client order id as a duplicate: it has an order of that id,
        which only we make. Follow that one; a clear rejection when it is not found (another
        market's). None: the exchange cannot be asked now (pending: followed by client order id)."""
        found = await self.resolve(order.order_id, order.symbol)
        if found is None:
            return None
        if found.status == "rejected" and found.exchange_id is None:
            return _rejected(order.order_id, "duplicate_client_order_id", exc)
        log.warning("duplicate client order id: the exchange has this order already, following it",
                    orderId=order.order_id, status=found.status)
        return found

    async def lookup(self, order_id: str, symbol: str) -> Tracked | None:
        """The order as the exchange has it (by client order id), or None when it has none."""
        try:
            cid = {"clientOrderId": client_order_id(order_id)}
            res = await self.call(self.exchange.fetch_order, "", ccxt_symbol(symbol), cid)
        except OrderNotFound:
            return None
        return Tracked(order_id).update(res)

    async def resolve(self, order_id: str, symbol: str, *, since: float | None = None) -> Tracked | None:
        """Ask until the exchange knows the order, or until a request sent at `since` can no longer
        be accepted (its receive window is over): then it was never placed. None when the
        exchange cannot be asked now (the caller keeps the order pending and asks again later)."""
        window = self.resolve_window_s
        deadline = (since or time.monotonic()) + window
        while True:
            try:
                found = await self.lookup(order_id, symbol)
            except NetworkError as exc:
                found = None
                if time.monotonic() > deadline + window:
                    log.error("exchange unreachable while resolving", orderId=order_id, error=str(exc)[:160])
                    return None
            else:
                if found is not None:
                    return found
                if time.monotonic() > deadline:
                    return _rejected(order_id, "not_at_exchange", None)
            await self.sleep(self.poll_s)

    async def follow(self, t: Tracked, symbol: str, *, quote_rates: bool = True) -> Tracked:
        """Bring a tracked order up to date: its status and its trades."""
        if t.status == "rejected" and t.exchange_id is None:
            return t
        fresh = await self.lookup(t.order_id, symbol) if not t.final or t.exchange_id is None else t
        if fresh is None:
            return t
        t = t.update({"status": _ccxt_status(fresh.status), "filled": str(fresh.filled), "id": fresh.exchange_id})
        if t.filled > t.fill_qty and t.exchange_id:
            t = t.update({"status": _ccxt_status(t.status), "filled": str(t.filled)}, await self.trades(t, symbol))
        return t

    async def trades(self, t: Tracked, symbol: str) -> list[Any]:
        rules = self.rules(symbol)
        base, quote = (rules.base, rules.quote) if rules else symbol.split("-", 1)
        params = {"orderId": t.exchange_id}
        raw = await self.call(self.exchange.fetch_my_trades, ccxt_symbol(symbol), None, None, params)
        raw = [x for x in raw if str(x.get("order")) == t.exchange_id]
        other = {(x.get("fee") or {}).get("currency") for x in raw} - {base, quote, None}
        rates = await self.rates({str(a) for a in other}, quote) if other else {}
        return fills_of(raw, base=base, quote=quote, rates=rates)

    async def result(self, t: Tracked, order: OrderRequest) -> ExecResult:
        """Follow a market order to its end (it ends at once on a real exchange); a limit order
        comes back pending, to be followed by the executor's tracker."""
        deadline = time.monotonic() + self.resolve_window_s
        t = await self.follow(t, order.symbol)
        while order.type == "market" and not t.settled() and time.monotonic() < deadline:
            await self.sleep(self.poll_s)
            t = await self.follow(t, order.symbol)
        return as_result(t)

    async def cancel(self, order_id: str, symbol: str) -> Tracked | None:
        # already final (filled, cancelled) or never placed: the lookup says which
        with contextlib.suppress(OrderNotFound):
            cid = {"clientOrderId": client_order_id(order_id)}
            await self.call(self.exchange.cancel_order, "", ccxt_symbol(symbol), cid)
        return await self.lookup(order_id, symbol)

    async def open_orders(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Open orders of the symbols we trade (one request per symbol: Binance weighs an
        all-symbol request as forty)."""
        out: list[dict[str, Any]] = []
        for sym in symbols:
            if sym in self.markets:
                out += await self.call(self.exchange.fetch_open_orders, ccxt_symbol(sym))
        return out

    async def close(self) -> None:
        await self.exchange.close()


def _ccxt_status(status: str) -> str:
    return {"new": "open", "partially_filled": "open", "filled": "closed", "cancelled": "canceled"}.get(status, status)


def _rejected(order_id: str, reason: str, exc: Exception | None) -> Tracked:
    return Tracked(order_id, status="rejected", rejection=reason if exc is None else f"{reason}: {str(exc)[:160]}")


def as_result(t: Tracked) -> ExecResult:
    status, note = outcome(t)
    reason = t.rejection or note
    return ExecResult(status, t.average, t.fee_quote, reason, tracked=t)
