"""trade-executor (7005): exec.orders → adapter → orders/fills ledger → exec.status.

Exactly-once effects on at-least-once delivery: an order id is claimed in the orders table
before anything is sent, so a redelivered order never reaches the adapter again (its recorded
status is published again instead). The halt gate is the last line of defence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError

from cli_trading import metrics
from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.auth import TokenStore
from cli_trading.bus import Delivery, Handled, MessageResult, PoisonMessage
from cli_trading.config import Settings
from cli_trading.contracts import Group, OrderMsg, StatusMsg, Stream, status_id
from cli_trading.db import order_pg, pgraw, repo
from cli_trading.exchanges import live
from cli_trading.exchanges.base import ExchangeAdapter, ExecResult, OrderRequest, OwnAccount, Received
from cli_trading.exchanges.desk import Desk, Partial, Settle, ledger_row
from cli_trading.exchanges.ledger_rows import fill_parts, fill_rows_of, trade_row
from cli_trading.exchanges.orders import Fill, Tracked
from cli_trading.exchanges.paper import PaperExchange
from cli_trading.halt.gate import HaltGate
from cli_trading.halt.policy import allows
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import ZERO, replay
from cli_trading.web import ApiError


def once_each(msgs: list[OrderMsg], claimed: set[str]) -> list[OrderMsg]:
    """The orders to send: those whose id was just claimed, each once (the same order twice in
    a batch — emitted twice — is sent once; the repeat is answered from the ledger)."""
    out: dict[str, OrderMsg] = {}
    for m in msgs:
        if m.orderId in claimed:
            out.setdefault(m.orderId, m)
    return list(out.values())


@dataclass(frozen=True)
class ExecutorParts:
    gate: HaltGate  # the last line of defence: every order passes the halt flag here
    adapter: ExchangeAdapter
    # the adapter again when its account is our own ledger (paper): claim, fill and settle in one
    # transaction (exchanges/base.py, OwnAccount)
    paper: OwnAccount | None = None
    desk: Desk | None = None  # live: what lives at the exchange between an order and its end


async def wire_executor(svc: Services, *, settle: Settle, partial: Partial, tokens: TokenStore) -> ExecutorParts:
    """The executor's parts from the settings (TRADING_MODE, ...): live, the exchange's desk,
    started (exchanges/live.py); paper, the paper engine on the ledger's fills."""
    s, gate = svc.settings, HaltGate(svc.redis)
    if s.trading_mode == "live":
        desk = await live.start_desk(
            s,
            sessions=svc.sessions,
            redis=svc.redis,
            settle=settle,
            partial=partial,
            halt_state=gate.read,
            clock=svc.clock,
            admin_token=lambda: tokens.token if tokens.configured() else None,
        )
        return ExecutorParts(gate, desk.ex, desk=desk)
    async with svc.sessions() as sess:
        ledger = replay(s.starting_cash, await repo.all_fills(sess), {})
    paper = PaperExchange(ledger, slippage_bps=s.slippage_bps, fee_bps=s.fee_bps)
    return ExecutorParts(gate, paper, paper=paper)


class TradeExecutor(Agent[ExecutorParts]):
    name = "trade-executor"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        # paper: reached the engine in a transaction that failed to commit, with its claim's time
        self._in_doubt: list[tuple[Received, Any]] = []
        # paper on PostgreSQL: the batch's transaction on a connection kept from the pool, not a
        # session per batch (~270 us of CPU each, db/pgraw.py)
        self.held: pgraw.Held | None = None

    async def wire(self, services: Services) -> ExecutorParts:
        return await wire_executor(
            services, settle=self.settle_one, partial=self.record_partial, tokens=self.guard.tokens
        )

    async def on_start(self) -> None:
        if self.parts.paper is not None and self.engine is not None and self.engine.dialect.name == "postgresql":
            self.held = pgraw.Held(self.engine)

    async def on_stop(self) -> None:
        if self.held is not None:
            self.held.close()
        if self._parts is not None:  # None when start-up failed before it was made
            await self._parts.adapter.close()

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        if self.parts.desk is None:
            return []
        notify, stop = self.notify, self.stop_event
        return live.loops(self.settings, self.parts.desk, stop=stop, halt_state=self.parts.gate.read, notify=notify)

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(Stream.ORDERS, Group.EXEC, self.handle_orders, key="orderId")]

    # -- the pipeline step -----------------------------------------------------------------
    async def handle_orders(self, batch: list[Delivery]) -> Handled:
        outcomes: dict[str, MessageResult] = {}
        orders: dict[str, OrderMsg] = {}
        for d in batch:
            try:
                orders[d.id] = OrderMsg.model_validate(d.payload)
            except ValidationError as exc:
                outcomes[d.id] = PoisonMessage(f"invalid order: {exc.errors()[0]['msg']}")
        msgs = list(orders.values())
        if self.parts.paper is not None:
            if self._paper_stale:
                await self._reload_paper_ledger(self.parts.paper)
            results = await self._claim_execute_settle(self.parts.paper, msgs)
        else:
            todo = once_each(msgs, await self._claim(msgs))
            desk = self.parts.desk
            results = await live.execute(desk, lambda: self._gated(todo)) if desk else await self._gated(todo)
            await self._settle(*self._rows(results))
        sent = {id(m) for m, _ in results}
        seen = [m for m in msgs if id(m) not in sent]  # claimed before, or a repeat in this batch
        statuses = await self._replayed_status(await self.parts.desk.take_pending(seen) if self.parts.desk else seen)
        statuses += [self._status(m, r) for m, r in results]
        for m, r in results:
            self.audit("order:" + r.status, request_id=m.requestId, target=m.orderId, result=r.reason)
        if self.parts.desk:
            await live.refused_orders(self.parts.desk, self.notify, self.settings.exchange_id, results)
        for st in statuses:
            metrics.ORDERS.labels(st.status).inc()
        # statuses go out, and the orders leave the in-flight set, atomically with the acks
        return Handled(
            [outcomes.get(d.id) for d in batch],
            emit=[(Stream.STATUS, st) for st in statuses],
            inflight_done=[m.orderId for m in msgs],
        )

    async def _claim_execute_settle(
        self, paper: OwnAccount, msgs: list[OrderMsg]
    ) -> list[tuple[OrderMsg, ExecResult]]:
        """Paper: claim, fill and settle in one transaction (one commit per batch). The engine
        is called only for the ids this transaction claimed (each once), and its record follows
        the commit: an order reaches it at most once, across a kill -9 too."""
        claims = self._claim_rows(msgs)
        try:
            if self.held is not None:  # PostgreSQL: straight to asyncpg, no session per batch
                async with self.held.transaction() as pg:
                    results = await self._gated(once_each(msgs, await order_pg.claim_orders(pg, rows=claims)))
                    orders, fills = self._rows(results)
                    await order_pg.settle_orders(pg, claimed=claims, orders=orders, fills=fills)
            else:
                async with self.session() as s, s.begin():
                    results = await self._gated(once_each(msgs, await repo.claim_orders(s, rows=claims)))
                    orders, fills = self._rows(results)
                    await repo.settle_orders(s, orders=orders, fills=fills)
        except Exception:
            # the fills applied in memory were rolled back: rebuild the paper account from the
            # database before the next batch (now, if the database still answers)
            self._paper_stale = True
            at = claims[0]["created_at"] if claims else None
            self._in_doubt += [(r, at) for r in paper.take_tentative()]
            raise
        paper.commit_record()
        return results

    _paper_stale = False

    async def _reload_paper_ledger(self, paper: OwnAccount) -> None:
        async with self.session() as s:
            fills = await repo.all_fills(s)
            rows = await repo.get_orders(s, order_ids=[r.order_id for r, _ in self._in_doubt])
        # a commit reported failed may have landed (the answer was lost): the orders whose claim
        # is that transaction's (its time, not another executor's) did reach the engine
        landed = {(o.order_id, o.created_at) for o in rows}
        paper.received.extend(r for r, at in self._in_doubt if (r.order_id, at) in landed)
        self._in_doubt = []
        paper.ledger = replay(self.settings.starting_cash, fills, {})
        self._paper_stale = False

    def _claim_rows(self, msgs: list[OrderMsg]) -> list[dict[str, Any]]:
        now = self.clock()
        return [ledger_row(m, now) for m in msgs]

    async def _claim(self, msgs: list[OrderMsg]) -> set[str]:
        async with self.session() as s, s.begin():
            return await repo.claim_orders(s, rows=self._claim_rows(msgs))

    async def _replayed_status(self, msgs: list[OrderMsg]) -> list[StatusMsg]:
        """Orders seen before: publish what the ledger says, never send them again."""
        if not msgs:
            return []
        async with self.session() as s:
            known = {o.order_id: o for o in await repo.get_orders(s, order_ids=[m.orderId for m in msgs])}
        out = []
        for m in msgs:
            o = known[m.orderId]
            status = o.status if o.status != "pending" else "failed"
            reason = o.reason if o.status != "pending" else "interrupted before the result was recorded"
            out.append(self._status(m, ExecResult(status, o.price, o.fee or Decimal(0), reason)))  # type: ignore[arg-type]  # a stored status
        return out

    def _rows(self, results: list[tuple[OrderMsg, ExecResult]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The orders' final state and the fills, as rows."""
        now = self.clock()
        order_rows = [
            {
                "order_id": m.orderId,
                "status": r.status,
                "price": r.price,
                "fee": r.fee,
                "reason": r.reason,
                "updated_at": now,
            }
            for m, r in results
        ]
        fill_rows = [row for m, r in results if r.status == "filled" for row in fill_rows_of(m, r, now)]
        return order_rows, fill_rows

    async def _gated(self, msgs: list[OrderMsg]) -> list[tuple[OrderMsg, ExecResult]]:
        if not msgs:
            return []
        verdict = await self.parts.gate.gate([m.orderId for m in msgs])
        if verdict == "ok":
            return [(m, await self._submit(m)) for m in msgs]
        if verdict == "unknown":
            return [(m, ExecResult("rejected", reason="halt_state_unknown")) for m in msgs]
        # reduce_only / flatten: only orders that shrink a position may pass (live: what the
        # exchange says is held)
        desk, paper = self.parts.desk, self.parts.paper
        held = desk.held if desk else paper.ledger.qty_of if paper else (lambda _s: ZERO)
        msgs = [live.flatten_all(desk, m) for m in msgs] if desk else msgs
        state = HaltState(halted=True, mode=verdict.split(":", 1)[1])
        reducing = [m for m in msgs if allows(state, side=m.side, position_qty=held(m.symbol), qty=m.qty)]
        passed = await self.parts.gate.gate([m.orderId for m in reducing], reducing=True) == "ok" if reducing else False
        out = []
        for m in msgs:
            ok = passed and m in reducing
            out.append((m, await self._submit(m) if ok else ExecResult("rejected", reason="halted")))
        return out

    async def _submit(self, m: OrderMsg) -> ExecResult:
        req = live.request(m) if self.parts.desk else OrderRequest(m.orderId, m.symbol, m.side, m.qty, m.price or ZERO)
        if req.price <= 0 and self.settings.trading_mode == "paper":
            return ExecResult("rejected", reason="no reference price")
        try:
            if self.parts.desk:  # recorded as its answer comes, under the desk's books
                return await live.submit(self.parts.desk, m, lambda: self.parts.adapter.submit(req))
            return await self.parts.adapter.submit(req)
        except Exception as exc:  # noqa: BLE001 - an adapter failure is an order outcome
            self.log.error("adapter failed", orderId=m.orderId, error=repr(exc))
            return ExecResult("failed", reason=f"{type(exc).__name__}: {str(exc)[:200]}")

    async def _settle(self, orders: list[dict[str, Any]], fills: list[dict[str, Any]]) -> None:
        """A real exchange has acted: the ledger write must land, so retry until it does."""
        if not orders and not fills:
            return
        delay = 0.1
        while True:
            try:
                async with self.session() as s, s.begin():
                    await repo.settle_orders(s, orders=orders, fills=fills)
                return
            except Exception as exc:  # noqa: BLE001
                self.log.error("ledger write failed, retrying", error=str(exc)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def settle_one(self, m: OrderMsg, r: ExecResult) -> None:
        """The desk's final word on an order it followed: ledger rows, then its exec.status."""
        await self._settle(*self._rows([(m, r)]))
        st = self._status(m, r)
        metrics.ORDERS.labels(st.status).inc()
        self.audit("order:" + r.status, request_id=m.requestId, target=m.orderId, result=r.reason)
        await self.bus.publish(Stream.STATUS, st)  # type: ignore[union-attr]  # the bus exists once started

    async def record_partial(self, m: OrderMsg, t: Tracked, new: Sequence[Fill]) -> None:
        """The desk saw new trades of an order still open: each is a fill row now (committed,
        retried until it lands), then an exec.status `pending` carrying them, so positions and PnL
        move with each partial fill. A trade recorded again (a restart, a redelivery) is one row,
        and the consumers apply it once. No trades: an order just adopted from the exchange,
        announced (`fills` empty), so that the risk manager reserves it."""
        now = self.clock()
        await self._settle([], [trade_row(m, f, now) for f in new])
        st = self._status(m, ExecResult("pending", t.average, t.fee_quote, f"{t.status} at the exchange", tracked=t))
        st.fills = fill_parts(new)
        st.statusId = status_id(m.orderId, st.fills)
        await self.bus.publish(Stream.STATUS, st)  # type: ignore[union-attr]  # the bus exists once started

    @staticmethod
    def _status(m: OrderMsg, r: ExecResult) -> StatusMsg:
        live = r.tracked is not None and r.status in ("filled", "pending")
        return StatusMsg(
            orderId=m.orderId,
            requestId=m.requestId,
            status=r.status,
            symbol=m.symbol,
            side=m.side,
            qty=r.tracked.fill_qty if r.tracked is not None and live else m.qty,
            price=r.price,
            fee=r.fee,
            reason=r.reason,
            traceId=m.traceId,
            statusId=m.orderId,
            # live: the order's trades, each a fill (paper: left out, the order is its one fill)
            fills=fill_parts(r.tracked.fills) if r.tracked is not None and r.status == "filled" else None,
        )

    # -- HTTP ------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"adapter": self.parts.adapter.name, "received": len(self.parts.adapter.received)}
        if self.parts.desk:
            out["exchange"] = self.parts.desk.status()
        if self.parts.paper is not None:
            snap = self.parts.paper.ledger.snapshot()
            out["paperAccount"] = {"cash": str(snap.cash), "equity": str(snap.equity)}
        return out

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/admin/exchange/accept-balances", tags=["admin"])
        async def accept_balances() -> dict[str, Any]:
            """Live: accept the exchange's balances after a drift was explained (moves the baseline)."""
            if self.parts.desk is None:
                raise ApiError(409, "not in live mode")
            return {"baseline": await self.parts.desk.accept_balances(), **self.parts.desk.status()}

        @app.post("/admin/exchange/reconcile", tags=["admin"])
        async def reconcile_now() -> dict[str, Any]:
            """Live: reconcile with the exchange now."""
            if self.parts.desk is None:
                raise ApiError(409, "not in live mode")
            return (await self.parts.desk.reconcile()).to_api()

        @app.get("/admin/exec/adapter", tags=["admin"])
        async def adapter_record(since: float = 0.0) -> dict[str, Any]:
            """Every order that reached the exchange adapter, with its arrival time."""
            rec = [r for r in self.parts.adapter.received if r.at >= since]
            return {
                "adapter": self.parts.adapter.name,
                "count": len(rec),
                "orders": [{"orderId": r.order_id, "at": r.at, "symbol": r.symbol, "side": r.side} for r in rec],
            }
