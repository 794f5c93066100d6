"""Wiring of live mode into the trade executor: building the exchange and its desk from the
settings, the desk's loops, and the few places where live execution differs from paper. Each
function takes what it uses (the settings, the desk, the executor's services), never the
executor itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import structlog
from ccxt.base.errors import AuthenticationError

from cli_trading.agents.base import StartupError, secret
from cli_trading.config import Settings
from cli_trading.contracts import HaltMode, HaltReason, OrderMsg
from cli_trading.exchanges.base import ExecResult, OrderRequest
from cli_trading.exchanges.ccxt_adapter import CcxtExchange, create_ccxt, rps_shares
from cli_trading.exchanges.desk import Desk, Partial, Settle

Notify = Callable[..., Awaitable[None]]  # the agent's notify: (type, severity, message, **detail)

log = structlog.get_logger("live")
FLATTEN_PREFIX = "flatten-"  # the orchestrator's flatten runs
AUTH_ALERT = "exchange.auth_failed"  # a P1 notification (defaults/notifications.yaml)
AUTH_ALERT_EVERY_S = 60.0  # at most one a minute from here; the notifier folds repeats further


def quote_of(symbols: list[str]) -> str:
    return symbols[0].split("-", 1)[1] if symbols and "-" in symbols[0] else "USDT"


async def start_desk(
    s: Settings,
    *,
    sessions: Any,
    redis: Any,
    settle: Settle,
    partial: Partial,
    halt_state: Callable[[], Awaitable[Any]],
    clock: Callable[[], Any],
    admin_token: Callable[[], str | None],
) -> Desk:
    """The exchange (the API key from the settings) and its desk, started: the markets and
    balances read, the orders open there adopted. Retried for a minute while the exchange is
    not up yet; a refused key stops the start at once."""
    key, sec = secret(s, "exchange_api_key"), secret(s, "exchange_api_secret")
    if not key or not sec:
        raise StartupError("live mode needs EXCHANGE_API_KEY_FILE and EXCHANGE_API_SECRET_FILE")
    rps = rps_shares(s.exchange_max_rps, live=True)[0]  # the candle feed has the rest of the ceiling
    ex = create_ccxt(s.exchange_id, key, sec, url=s.exchange_url, max_rps=rps)
    adapter = CcxtExchange(
        ex, resolve_window_s=s.exchange_resolve_window_s, give_up_s=s.exchange_rate_limit_give_up_s
    )
    desk = Desk(
        adapter,
        sessions=sessions,
        redis=redis,
        settle=settle,
        partial=partial,
        halt=lambda note: request_halt(s, admin_token(), note),
        halt_state=halt_state,
        clock=clock,
        quote=quote_of(s.symbol_list),
        symbols=s.symbol_list,
        drift_limit=s.reconcile_drift_limit,
        unknown_orders=s.exchange_unknown_orders,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            await desk.start()
            break
        except Exception as exc:  # noqa: BLE001 - the exchange may come up after us
            if isinstance(exc, AuthenticationError):  # no use retrying: say what to fix
                await adapter.close()
                raise StartupError(
                    f"exchange {s.exchange_id} refused the API key or secret ({str(exc)[:160]}): check "
                    "EXCHANGE_API_KEY_FILE and EXCHANGE_API_SECRET_FILE (trade permission, no withdrawal)"
                ) from exc
            if time.monotonic() > deadline:
                await adapter.close()
                raise StartupError(f"exchange {s.exchange_id} not usable: {type(exc).__name__}: {exc}") from exc
            log.warning("exchange not ready, retrying", error=f"{type(exc).__name__}: {str(exc)[:160]}")
            await asyncio.sleep(2)
    log.info("live desk ready", exchange=s.exchange_id, markets=len(adapter.markets), url=s.exchange_url)
    return desk


def loops(
    s: Settings, desk: Desk, *, stop: asyncio.Event, halt_state: Callable[[], Awaitable[Any]], notify: Notify
) -> list[Callable[[], Awaitable[None]]]:
    """Following open orders, reconciliation and the markets' refresh, each at its interval
    until `stop`."""

    async def every(period: float, step: Callable[[], Awaitable[Any]], what: str) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
            if stop.is_set():
                return
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - the loop goes on; the next round retries
                log.warning(f"{what} failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
                if isinstance(exc, AuthenticationError):
                    await auth_refused(desk, notify, s.exchange_id, what)

    async def follow() -> None:
        await every(s.exchange_poll_s, lambda: _tick(desk, halt_state), "following open orders")

    async def reconcile() -> None:
        await every(s.reconcile_interval_s, desk.reconcile, "reconciliation")

    async def markets() -> None:
        await every(s.exchange_markets_refresh_s, desk.refresh_markets, "markets refresh")

    return [follow, reconcile, markets]


async def _tick(desk: Desk, halt_state: Callable[[], Awaitable[Any]]) -> None:
    if desk.open:
        await desk.tick(await halt_state())


async def execute(
    desk: Desk, send: Callable[[], Awaitable[list[tuple[OrderMsg, ExecResult]]]]
) -> list[tuple[OrderMsg, ExecResult]]:
    """Send the orders (each recorded by `submit` as its answer comes); those not final at the
    exchange are the desk's now (it settles them when they end): the final ones are returned, for
    the executor to settle now."""
    results = await send()
    if results:
        try:
            await desk.refresh_balances()
        except Exception as exc:  # noqa: BLE001 - the orders are done: their results must be recorded
            # (failing the batch would leave them pending and report them failed on redelivery);
            # the balances are read again by the next follow-up or reconciliation
            log.warning("balances not refreshed after sending", error=f"{type(exc).__name__}: {str(exc)[:200]}")
    return [(m, r) for m, r in results if not (r.tracked is not None and r.status == "pending")]


async def submit(desk: Desk, m: OrderMsg, send: Callable[[], Awaitable[ExecResult]]) -> ExecResult:
    """Send one order and record what the exchange answered, holding the desk's books: from the
    moment an order may fill at the exchange until its trades are recorded, reconciliation waits
    (the fill would otherwise be drift, or the order an unknown one to cancel). A wait for a
    429/418 steps out of the books (`Desk._throttled_wait`): nothing of this order is at the
    exchange then, and the orders sent before it are recorded already."""
    async with desk.books:
        r = await send()
        if r.tracked is None:  # refused before sending (no market, under a minimum): nothing at the exchange
            return r
        if r.status == "pending":
            await desk.follow_later(m, r.tracked)
        else:
            await desk.record(m, r.tracked)
        return r


def flatten_all(desk: Desk, m: OrderMsg) -> OrderMsg:
    """A flatten sells what the exchange says is held, not what the ledger believes."""
    if not m.requestId.startswith(FLATTEN_PREFIX) or m.side != "sell":
        return m
    rules = desk.ex.rules(m.symbol)
    held = desk.held(m.symbol)
    qty = rules.amount(held) if rules else held
    return m.model_copy(update={"qty": qty}) if qty > 0 else m


def request(m: OrderMsg) -> OrderRequest:
    limit = m.type == "limit"
    return OrderRequest(
        m.orderId,
        m.symbol,
        m.side,
        m.qty,
        m.price or Decimal(0),
        type=m.type,
        limit_price=m.price if limit else None,
        time_in_force=m.timeInForce,
    )


async def auth_refused(desk: Desk, notify: Notify, exchange_id: str, where: str) -> None:
    """The exchange refused the key or a signature while live (revoked, rotated, IP no longer
    allowed): orders are rejected `exchange_auth_failed` and nothing at the exchange can be
    followed or cancelled until the key is fixed. The operator is told (P1); the exchange's
    error text is left out (the notification goes to chat channels)."""
    now = time.monotonic()
    if now - desk.auth_alert_at < AUTH_ALERT_EVERY_S:
        return
    desk.auth_alert_at = now
    log.error("the exchange refused the API key or signature", exchange=exchange_id, where=where)
    await notify(
        AUTH_ALERT,
        "critical",
        f"exchange {exchange_id} refused the API key or signature ({where}): nothing can be placed, "
        "followed or cancelled there until it is fixed; check the key (trade permission, IP "
        "restriction) and EXCHANGE_API_KEY_FILE / EXCHANGE_API_SECRET_FILE (a new key takes a restart of the "
        "trade executor)",
        exchange=exchange_id,
        where=where,
    )


async def refused_orders(
    desk: Desk, notify: Notify, exchange_id: str, results: list[tuple[OrderMsg, ExecResult]]
) -> None:
    """Orders the exchange refused for the key or signature: tell the operator."""
    if any((r.reason or "").startswith("exchange_auth_failed") for _, r in results):
        await auth_refused(desk, notify, exchange_id, "placing an order")


async def request_halt(s: Settings, token: str | None, note: str) -> None:
    """The drift halt goes through the orchestrator's admin API, like an operator's: it is
    recorded, notified (P1) and enforced everywhere once answered. Retried until answered."""
    base = s.orchestrator_url or f"http://127.0.0.1:{s.port_of('orchestrator')}"
    url = base.rstrip("/") + "/admin/orchestrate/halt"
    body = {"reason": HaltReason.RECONCILIATION_DRIFT.value, "note": note[:1000], "mode": HaltMode.HALT.value}
    for attempt in range(10):
        try:
            async with httpx.AsyncClient(timeout=10) as c:
                r = await c.post(url, json=body, headers={"X-Admin-Token": token or ""})
            if r.status_code < 300:
                log.error("halted: reconciliation drift", note=note)
                return
            log.error("drift halt refused", status=r.status_code, body=r.text[:200])
        except httpx.HTTPError as exc:
            log.error("drift halt not answered", error=str(exc)[:200])
        await asyncio.sleep(min(2**attempt * 0.2, 5))
