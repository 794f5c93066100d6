"""The live desk: the trade executor's companion in live mode. It owns what lives at the exchange
between one order message and the order's final status:

- the markets (loaded at start, refreshed, published in Redis for the risk manager);
- the balances (read from the exchange: the held quantities reduce_only and flatten use);
- every order not final yet (a resting limit order, an order whose answer was lost, an order left
  pending by a crash), followed until the exchange states its end, each trade recorded once;
- on a halt, open orders cancelled (halt, flatten) or kept only when they reduce (reduce_only);
- reconciliation: balances and open orders at the exchange against the ledger, drift published
  (`RECON_KEY`, metrics) and, past the limit, the halt `reconciliation_drift`.

`books` is held by whoever moves an order between the exchange and the ledger (the executor from
sending an order to recording what the exchange answered, the follow-up of open orders) and by the
reconciliation while it reads both sides: an order the exchange has filled and the ledger has not
recorded yet is never seen as drift (nor as an open order unknown to the ledger, to be cancelled),
and the operator's accepted baseline never includes one. An order the exchange refuses with a
429/418 waits outside the books (`Books.stepped_out`): nothing of it is at the exchange, the orders
sent before it are recorded already (the executor records each order as its answer comes), so
follow-ups, a halt's cancels and reconciliation go on during a storm.
The decisions are pure (`orders.py`, `markets.py`, `reconcile.py`); this class does the I/O.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson
import structlog

from cli_trading import metrics
from cli_trading.contracts import OrderMsg, iso
from cli_trading.db import exchange_repo, repo
from cli_trading.exchanges.base import ExecResult, OrderRequest
from cli_trading.exchanges.books import Books
from cli_trading.exchanges.ccxt_adapter import CcxtExchange, as_result
from cli_trading.exchanges.keys import BALANCES_KEY, MARKETS_KEY, RECON_KEY
from cli_trading.exchanges.markets import ccxt_symbol, client_order_id
from cli_trading.exchanges.orders import Fill, Tracked, unrecorded
from cli_trading.exchanges.reconcile import (
    Report,
    UnknownPolicy,
    adopted_order,
    baseline_without,
    detail,
    drifts,
    expected_balances,
    unknown_order_action,
)
from cli_trading.halt import policy

log = structlog.get_logger("desk")

Settle = Callable[[OrderMsg, ExecResult], Awaitable[None]]
Partial = Callable[[OrderMsg, Tracked, Sequence[Fill]], Awaitable[None]]  # new trades of an open order
Halt = Callable[[str], Awaitable[None]]


@dataclass
class Open:
    msg: OrderMsg
    tracked: Tracked
    since: float = 0.0  # monotonic time we started looking for it (an order not found yet)
    recorded: frozenset[str] = frozenset()  # trade ids in `fills` already (after a restart: none)


def ledger_row(m: OrderMsg, now: Any) -> dict[str, Any]:
    """The ledger's `orders` row of an order not final yet (as the executor claims one)."""
    return {
        "order_id": m.orderId,
        "request_id": m.requestId,
        "created_at": now,
        "symbol": m.symbol,
        "side": m.side,
        "qty": m.qty,
        "type": m.type,
        "status": "pending",
        "updated_at": now,
    }


def order_row(m: OrderMsg) -> dict[str, Any]:
    limit = m.type == "limit"
    return {
        "symbol": m.symbol,
        "side": m.side,
        "type": m.type,
        "qty": m.qty,
        "limit_price": m.price if limit else None,
        "time_in_force": m.timeInForce,  # the contract's default (GTC) for a market order too
    }


class Desk:
    def __init__(
        self,
        adapter: CcxtExchange,
        *,
        sessions: Any,
        redis: Any,
        settle: Settle,
        partial: Partial,
        halt: Halt,
        halt_state: Callable[[], Awaitable[Any]],
        clock: Callable[[], Any],
        quote: str,
        symbols: list[str],
        drift_limit: Decimal,
        unknown_orders: UnknownPolicy = "cancel",
    ) -> None:
        self.ex, self.sessions, self.redis = adapter, sessions, redis
        self.halt_state = halt_state
        self.settle, self.halt, self.clock, self.quote, self.symbols = settle, halt, clock, quote, symbols
        self.partial = partial
        self.open: dict[str, Open] = {}
        self.balances: dict[str, Decimal] = {}
        self.report: Report | None = None
        self.limits = policy.DriftLimits(drift_limit)
        self.checks_over = 0  # consecutive reconciliations past the limit
        self.unknown_policy = unknown_orders
        self.markets_at = 0.0
        self.books = Books()
        self.auth_alert_at = float("-inf")  # monotonic time of the last "key refused" notification
        adapter.throttled_wait = self._throttled_wait
        adapter.may_resend = self._may_resend

    async def _throttled_wait(self, seconds: float) -> None:
        """An order refused with a 429/418 waits outside the books: others are not held behind it."""
        async with self.books.stepped_out():
            await self.ex.sleep(seconds)

    async def _may_resend(self, order: OrderRequest) -> bool:
        """An order that waited out a 429 is sent again only if a halt that came meanwhile lets it
        (reduce_only / flatten: a sell within what the exchange holds)."""
        state = await self.halt_state()
        if state is None or not state.halted:
            return True
        return policy.allows(state, side=order.side, position_qty=self.held(order.symbol), qty=order.qty)

    # -- markets and balances ----------------------------------------------------------------
    async def refresh_markets(self) -> None:
        rules = await self.ex.load_markets(reload=bool(self.markets_at))
        self.markets_at = time.monotonic()
        await self.redis.set(MARKETS_KEY, orjson.dumps({s: r.to_json() for s, r in rules.items()}))

    async def refresh_balances(self) -> dict[str, Decimal]:
        self.balances = await self.ex.balances()
        await self.redis.set(BALANCES_KEY, orjson.dumps({k: str(v) for k, v in self.balances.items()}))
        return self.balances

    def held(self, symbol: str) -> Decimal:
        """What the exchange says is held of the symbol's base asset (free and in open orders)."""
        rules = self.ex.rules(symbol)
        base = rules.base if rules else symbol.split("-", 1)[0]
        return self.balances.get(base, Decimal(0))

    # -- start ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.refresh_markets()
        async with self.books:
            await self.refresh_balances()
            async with self.sessions() as s, s.begin():
                await exchange_repo.set_baseline(s, amounts=self.balances, now=self.clock())
            await self.recover()
        await self.reconcile()

    async def recover(self) -> None:
        """Orders a previous life left without a final status (a crash between send and answer,
        an answer lost, a resting limit order): ask the exchange, by client order id, never send."""
        async with self.sessions() as s:
            pending = {o.order_id: o for o in await repo.stale_pending_orders(s)}
        for oid, o in pending.items():
            msg = OrderMsg.model_validate(
                {
                    "orderId": oid,
                    "requestId": o.request_id,
                    "symbol": o.symbol,
                    "side": o.side,
                    "qty": o.qty,
                    "type": o.type,
                }
            )
            t = await self.ex.resolve(oid, o.symbol)
            if t is None:  # the exchange cannot be asked now: keep following it
                self.open[oid] = Open(msg, Tracked(oid), time.monotonic())
                continue
            log.info("order from before the restart resolved", orderId=oid, status=t.status)
            await self.track(msg, t)

    # -- following orders ------------------------------------------------------------------------
    async def track(self, msg: OrderMsg, t: Tracked) -> None:
        """Record what the exchange has; settle when final, else record its new trades as fills
        and keep following."""
        t = await self.ex.follow(t, msg.symbol) if t.exchange_id or t.status != "rejected" else t
        await self._save(msg, t)
        if t.settled() or (t.final and not t.exchange_id):
            self.open.pop(msg.orderId, None)
            await self.settle(msg, as_result(t))
            await self.refresh_balances()
        else:
            prev = self.open.get(msg.orderId) or Open(msg, t, time.monotonic())
            o = self.open[msg.orderId] = Open(msg, t, prev.since, prev.recorded)  # followed whatever happens
            self.open[msg.orderId] = await self._partial(o)

    async def follow_later(self, msg: OrderMsg, t: Tracked) -> None:
        """An order not final yet (resting, or its answer lost): the tick follows it; its trades
        so far (a limit order partly filled on arrival) are fills now."""
        await self._save(msg, t)
        o = self.open[msg.orderId] = Open(msg, t, time.monotonic())
        self.open[msg.orderId] = await self._partial(o)

    async def _partial(self, o: Open) -> Open:
        """An open order's trades not in the ledger yet: recorded (`TradeExecutor.record_partial`:
        fill rows, then exec.status)."""
        if new := unrecorded(o.tracked, o.recorded):
            await self.partial(o.msg, o.tracked, new)
        return replace(o, recorded=o.recorded | {f.trade_id for f in new})

    async def take_pending(self, msgs: list[OrderMsg]) -> list[OrderMsg]:
        """Redelivered orders (claimed before, so never sent again): those the ledger still has
        `pending` are followed here until the exchange gives their final status (the batch that
        sent them failed after sending, or before: found by client order id, or known never placed
        once the resolve window is over), never reported failed while they may fill. Returned: the
        others, whose recorded status is published again."""
        msgs = [m for m in msgs if m.orderId not in self.open]
        if not msgs:
            return []
        async with self.sessions() as s:
            rows = await repo.get_orders(s, order_ids=[m.orderId for m in msgs])
        pending = {o.order_id for o in rows if o.status == "pending"}
        for m in msgs:
            if m.orderId in pending:
                log.warning("redelivered order still pending: looking it up by client order id", orderId=m.orderId)
                self.open[m.orderId] = Open(m, Tracked(m.orderId), time.monotonic())
        return [m for m in msgs if m.orderId not in pending]

    async def record(self, msg: OrderMsg, t: Tracked) -> None:
        """A final result the executor settles itself: only its exchange rows."""
        await self._save(msg, t)

    async def _save(self, msg: OrderMsg, t: Tracked) -> None:
        async with self.sessions() as s, s.begin():
            await exchange_repo.save_tracked(s, order=order_row(msg), tracked=t, now=self.clock())

    async def tick(self, halt_state: Any) -> None:
        """Follow every open order once; on a halt, cancel what may not stay."""
        async with self.books:
            await self._follow_open(halt_state)

    async def _follow_open(self, halt_state: Any) -> None:
        metrics.EXCHANGE_OPEN_ORDERS.set(len(self.open))
        for oid, o in list(self.open.items()):
            try:
                if halt_state is not None and halt_state.halted and not self._may_stay(o, halt_state.mode):
                    log.info("cancelling an open order on halt", orderId=oid, mode=halt_state.mode)
                    cancelled = await self.ex.cancel(oid, o.msg.symbol)
                    t = o.tracked.update(_ccxt(cancelled)) if cancelled else o.tracked
                elif o.tracked.exchange_id:
                    t = o.tracked
                else:
                    t = await self._find(o)
                await self.track(o.msg, t)
            except Exception as exc:  # noqa: BLE001 - one order's trouble must not stop the others
                log.warning("could not follow an order", orderId=oid, error=f"{type(exc).__name__}: {exc}"[:200])

    async def _find(self, o: Open) -> Tracked:
        """An order whose fate is unknown: the exchange has it, or, once a request could no longer
        be accepted (the resolve window is over), it was never placed."""
        found = await self.ex.lookup(o.msg.orderId, o.msg.symbol)
        if found is not None:
            return found
        if time.monotonic() - o.since > self.ex.resolve_window_s:
            return Tracked(o.msg.orderId, status="rejected", rejection="not_at_exchange")
        return o.tracked

    def _may_stay(self, o: Open, mode: str) -> bool:
        """reduce_only keeps a resting order only when it reduces (a sell within what is held)."""
        if mode != "reduce_only":
            return False
        return o.msg.side == "sell" and o.msg.qty <= self.held(o.msg.symbol)

    # -- reconciliation --------------------------------------------------------------------------
    async def reconcile(self) -> Report:
        async with self.books:
            # the open orders first, and ours with them: an order of ours that ends while the
            # balances are settled below is still known to be ours
            at_exchange = await self.ex.open_orders(self.symbols)
            async with self.sessions() as s:
                ours = {o.order_id for o in await exchange_repo.open_orders(s)} | set(self.open)
            known = {client_order_id(oid) for oid in ours}
            unknown_ids, adopted = await self._unknown(
                [o for o in at_exchange if str(o.get("clientOrderId") or "") not in known]
            )
            balances = await self._settled_balances()
            async with self.sessions() as s:
                baseline = await exchange_repo.baseline(s)
                trades = await exchange_repo.fills(s)
        prices = await self._prices(set(balances) | {t.symbol.split("-")[0] for t in trades})
        expected = expected_balances(baseline, trades)
        assets = drifts(balances, expected, prices=prices, quote=self.quote)
        self.report = Report(assets, unknown_ids, [], adopted)
        await self._publish(self.report)
        drift = policy.Drift(self.report.value, len(unknown_ids), detail(self.report))
        self.checks_over = self.checks_over + 1 if policy.drift_over(drift, self.limits) else 0
        state = await self.halt_state() if self.checks_over else None
        decision = (
            policy.reconciliation_drift(state, drift=drift, limits=self.limits, checks_over=self.checks_over)
            if state is not None
            else None
        )
        if decision is not None:
            log.error("reconciliation drift past the limit", note=decision.note)
            await self.halt(decision.note)
        return self.report

    async def _settled_balances(self) -> dict[str, Decimal]:
        """The exchange's balances with every trade they include recorded (`books` held): a resting
        order may fill at any moment, so its trades are fetched after the balances are read, and the
        balances read again when that found new ones (a fill between the two reads)."""
        balances = self.balances
        for _ in range(3):
            before = self._progress()
            balances = await self.refresh_balances()
            if not self.open:
                break
            await self._follow_open(None)
            if self._progress() == before:
                break
        return balances

    def _progress(self) -> dict[str, tuple[Decimal, str]]:
        return {oid: (o.tracked.fill_qty, o.tracked.status) for oid, o in self.open.items()}

    async def _unknown(self, orders: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """The documented policy (EXCHANGE_UNKNOWN_ORDERS, decided by `unknown_order_action`) for
        each open order the ledger does not know: the client order ids left as drift, and those
        adopted."""
        drift: list[str] = []
        adopted: list[str] = []
        for o in orders:
            cid = str(o.get("clientOrderId") or o.get("id"))
            action = unknown_order_action(o, self.unknown_policy)
            if action == "cancel":
                with contextlib.suppress(Exception):
                    log.warning("cancelling an open order unknown to the ledger", clientOrderId=cid)
                    await self.ex.call(self.ex.exchange.cancel_order, o["id"], o["symbol"])
            elif action == "adopt" and await self._adopt(o):
                adopted.append(cid)
            else:
                drift.append(cid)
        return drift, adopted

    async def _adopt(self, order: dict[str, Any]) -> bool:
        """Take an order the ledger does not know into it as an order of ours (`books` held): a
        pending ledger order and its exchange rows with the trades it has made, written in one
        transaction (a crash leaves it unknown, to be adopted again, or ours, resolved at the next
        start like any pending order), then followed until final and settled like ours. Its trades
        older than the balance baseline are taken out of the baseline (`baseline_without`). False
        when it cannot be: an order of that id is in the ledger already."""
        msg = adopted_order(order)
        if msg is None:
            return False
        try:
            t = await self.ex.follow(Tracked(msg.orderId).update(order), msg.symbol)
            now = self.clock()
            async with self.sessions() as s, s.begin():
                if not await repo.claim_orders(s, rows=[ledger_row(msg, now)]):
                    log.error("open order unknown to the ledger has the id of a ledger order", orderId=msg.orderId)
                    return False
                taken_at = await exchange_repo.baseline_taken_at(s)
                baseline = await exchange_repo.baseline(s)
                moved = baseline_without(baseline, order=msg, fills=t.fills, taken_at=taken_at)
                if moved is not None and taken_at is not None:  # the baseline keeps its time
                    await exchange_repo.replace_baseline(s, amounts=moved, now=taken_at)
                await exchange_repo.save_tracked(s, order=order_row(msg), tracked=t, now=now)
        except Exception as exc:  # noqa: BLE001 - not adopted now: drift, tried again next time
            log.warning(
                "could not adopt an open order", orderId=msg.orderId, error=f"{type(exc).__name__}: {exc}"[:200]
            )
            return False
        log.warning(
            "adopted an open order unknown to the ledger",
            orderId=msg.orderId,
            symbol=msg.symbol,
            side=msg.side,
            qty=str(msg.qty),
            status=t.status,
            baselineMoved=moved is not None,
        )
        self.open[msg.orderId] = Open(msg, t, time.monotonic())  # followed from now on, whatever happens next
        try:
            await self.partial(msg, t, [])  # announced, no trades: the running risk manager reserves it
            await self.track(msg, t)
        except Exception as exc:  # noqa: BLE001 - in the ledger now: the next tick follows it
            log.warning("could not follow an adopted order yet", orderId=msg.orderId, error=str(exc)[:200])
        return True

    async def _prices(self, assets: set[str]) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for a in assets - {self.quote}:
            if f"{a}-{self.quote}" in self.ex.markets:
                with contextlib.suppress(Exception):
                    t = await self.ex.call(self.ex.exchange.fetch_ticker, ccxt_symbol(f"{a}-{self.quote}"))
                    out[a] = Decimal(str(t["last"]))
        return out

    async def _publish(self, r: Report) -> None:
        body = {"ts": iso(self.clock()), "quote": self.quote, **r.to_api()}
        await self.redis.set(RECON_KEY, orjson.dumps(body))
        metrics.RECON_DRIFT.clear()
        for a in r.assets:
            metrics.RECON_DRIFT.labels(a.asset).set(float(a.value))
        metrics.RECON_DRIFT_TOTAL.set(float(r.value))

    async def accept_balances(self) -> dict[str, str]:
        """The operator has checked the drift and accepts the exchange's balances as they are:
        the baseline moves by the difference, so that the ledger's trades explain them again."""
        async with self.books:
            balances = await self._settled_balances()
            async with self.sessions() as s, s.begin():
                baseline = await exchange_repo.baseline(s)
                expected = expected_balances(baseline, await exchange_repo.fills(s))
                moved = {
                    a: baseline.get(a, Decimal(0)) + balances.get(a, Decimal(0)) - expected.get(a, Decimal(0))
                    for a in set(balances) | set(expected)
                }
                await exchange_repo.replace_baseline(s, amounts=moved, now=self.clock())
        self.checks_over = 0
        await self.reconcile()
        return {a: str(v) for a, v in sorted(moved.items())}

    def status(self) -> dict[str, Any]:
        return {
            "markets": len(self.ex.markets),
            "openOrders": sorted(self.open),
            "balances": {k: str(v) for k, v in self.balances.items() if v},
            "reconciliation": self.report.to_api() if self.report else None,
            "rateLimitBackoffs": self.ex.backoffs,
        }


def _ccxt(t: Tracked) -> dict[str, Any]:
    status = {"new": "open", "partially_filled": "open", "filled": "closed", "cancelled": "canceled"}
    return {"status": status.get(t.status, t.status), "filled": str(t.filled), "id": t.exchange_id}
