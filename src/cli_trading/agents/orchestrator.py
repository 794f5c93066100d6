"""orchestrator (7001): the control plane. Schedules analyses on new bars, routes
signal → risk → order, records exactly one outcome per run, owns the trading day, the PnL view
and the halt state. Routes live in `orchestrator_api.py`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from decimal import Decimal
from typing import Any

from fastapi import FastAPI

from cli_trading import metrics
from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.orchestrator_wiring import OrchestratorParts, found_at_start, wire_orchestrator
from cli_trading.agents.wiring import Services
from cli_trading.bus import (
    Delivery,
    Handled,
    MessageResult,
    Outgoing,
    PoisonMessage,
    decoded,
    failures,
    per_message,
    valid,
)
from cli_trading.config import Settings
from cli_trading.contracts import (
    AnalyzeCommand,
    BarMsg,
    Group,
    HaltMode,
    HaltReason,
    OptResult,
    OrderMsg,
    RiskRequest,
    RiskResponse,
    SignalMsg,
    StatusMsg,
    Stream,
    new_id,
)
from cli_trading.control.pnl import pnl_view
from cli_trading.control.runs import Run, RunRefused, limit_fields
from cli_trading.db.pgraw import Held
from cli_trading.halt import policy
from cli_trading.halt.policy import allows
from cli_trading.isotime import parse_iso
from cli_trading.supervision import fetch as fetch_supervision
from cli_trading.supervision import health_entry
from cli_trading.trading.fills import qty_for_notional, size_order


class Orchestrator(Agent[OrchestratorParts]):
    name = "orchestrator"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.exec_failures = 0  # consecutive failed orders (the execution-failure halt)
        self.overridden: set[str] = set()  # automatic halts force-unhalted today

    async def wire(self, services: Services) -> OrchestratorParts:
        found = await found_at_start(services.sessions, starting_cash=self.settings.starting_cash, now=self.clock())
        return wire_orchestrator(
            services,
            found,
            loop=asyncio.get_running_loop(),
            db_up=self.db_up,
            roll_day=self.roll_day,
            flatten=self.flatten,
            pnl=self.pnl,
            health=self.health_checks,
            process=self.base_status,
        )

    async def on_start(self) -> None:
        parts = self.parts
        if self.engine is not None and self.engine.dialect.name == "postgresql":
            parts.runs.held = Held(self.engine)  # the group commit without a session (db/pgraw.py)
        await asyncio.to_thread(parts.halt_store.warm_up)  # Redis checked at start
        # before any consumer starts: nothing trades on a stale flag
        await parts.halts.restore(parts.found.halt_saved_at)
        await parts.safety.resolve_open_runs(
            parts.found.open_orders, to_risk=lambda run: self._to_risk(run, manual=run.manual)
        )
        await parts.watchdogs.start()
        await self.roll_day()

    def subscriptions(self) -> list[Subscription]:
        rid = "requestId"
        return [
            Subscription(Stream.SIGNALS, Group.ORCHESTRATOR, self.on_signals, key=rid),
            Subscription(Stream.RISK_RESPONSES, Group.ORCHESTRATOR, self.on_risk, key=rid),
            Subscription(Stream.STATUS, Group.ORCHESTRATOR, self.on_status, key="statusId"),
            Subscription(Stream.BARS, Group.ORCHESTRATOR, self.on_bars),
            Subscription(Stream.OPT_RESULTS, Group.ORCHESTRATOR, per_message(self.on_opt_result), key=rid),
        ]

    def loops(self) -> list[Any]:
        return [
            functools.partial(self.parts.watchdogs.run, self.stop_event),
            functools.partial(self.parts.recorder.run, self.stop_event),
            functools.partial(self.parts.safety.flush_loop, self.stop_event),
        ]

    async def health_checks(self) -> dict[str, dict[str, Any]]:
        """Also `up`'s view of every process (crash loops), read from Redis (supervision.py)."""
        return {**await super().health_checks(), "supervision": health_entry(await fetch_supervision(self.redis))}

    async def on_stop(self) -> None:
        if self._parts is not None:  # None when start-up failed early
            self._parts.halt_store.close()
            if self._parts.runs.held is not None:
                self._parts.runs.held.close()
            await self._parts.overview.close()

    def add_routes(self, app: FastAPI) -> None:
        from cli_trading.agents.orchestrator_api import add_routes

        add_routes(app, self)

    # -- PnL and the trading day ------------------------------------------------------------
    def pnl(self) -> dict[str, Any]:
        days, halt = self.parts.days, self.parts.halts.state
        return pnl_view(self.parts.ledger, day=days.day, defaults=days.defaults, halt=halt, now=self.clock())

    def refresh_metrics(self) -> None:
        snap = self.parts.ledger.snapshot()
        metrics.EQUITY.set(float(snap.equity))
        if self.parts.days.day:
            metrics.PNL_PCT.set(float(self.parts.days.day.percent(snap.equity)))

    async def roll_day(self) -> None:
        first = self.parts.days.day is None
        new = await self.parts.days.roll()
        if new is None:
            return
        self.overridden.clear()
        self.audit("day:start", target=new.date, start_equity=str(new.start_equity))
        if not first and policy.clears_at_rollover(self.parts.halts.state):
            self.parts.halts.unhalt(
                actor="system:rollover",
                source=None,
                note=f"new trading day {new.date}",
                force=True,
                pnl_pct=Decimal(0),
                limits=new.limits,
                why="rollover_clear",
            )

    async def _check_auto_halt(self) -> None:
        if (day := self.parts.days.day) is None:
            return
        decision = policy.pnl_limits(
            self.parts.halts.state,
            pnl_pct=self.parts.days.percent(),
            limits=day.limits,
            overridden=frozenset(self.overridden),
        )
        if decision is not None:
            self.parts.halts.apply(decision)
            if decision.reason == HaltReason.DAILY_LOSS:
                await self.parts.params.request_optimization(reason="daily_loss_limit")

    # -- runs ------------------------------------------------------------------------------
    async def start_run(
        self,
        *,
        symbol: str,
        side: str | None,
        qty: Decimal | None,
        notional: Decimal | None,
        request_id: str | None,
        manual: bool = True,
        reduce_only: bool = False,
        limit: tuple[Decimal, str] | None = None,  # a limit order's price and time in force
    ) -> Run:
        rid = request_id or new_id()
        if rid in self.parts.runs:
            existing = self.parts.runs.get(rid)
            raise RunRefused(409, f"requestId {rid} already exists", existing)
        retried = self.parts.runs.retry_of_refused(rid)  # answered 503 before: this run takes its place
        run = Run(rid, symbol, self.clock(), manual=manual and side is not None, side=side)
        self.parts.runs.add(run)
        self.audit("run:requested", request_id=rid, target=symbol, side=side, manual=run.manual)
        if side is None:
            if self.parts.halts.state.halted:
                self.parts.runs.finish(run, "rejected", reason="halted", now=self.clock())
                raise RunRefused(409, "trading is halted", run)
            self.parts.runs.touch(run, "analyzing")
            await self.parts.safety.accept(run, retried=retried)
            analyze = AnalyzeCommand(requestId=rid, symbol=symbol)
            await self.parts.safety.send(run, self.streams.publish(Stream.COMMANDS, analyze))
            return run
        price = self.parts.ledger.price_of(symbol)
        if price is None:
            self.parts.runs.finish(run, "rejected", reason="no_market_price", now=self.clock())
            raise RunRefused(409, f"no market price for {symbol} yet", run)
        if limit is not None:  # kept in the run's strategy field: it survives a restart with the run
            price, run.strategy = limit[0], f"limit:{limit[1]}"
        run.price, run.confidence = price, 1.0
        run.qty = qty if qty is not None else qty_for_notional(notional or Decimal(0), price)
        if run.qty <= 0:
            self.parts.runs.finish(run, "rejected", reason="quantity_too_small", now=self.clock())
            raise RunRefused(422, "quantity rounds to zero", run)
        if not allows(self.parts.halts.state, side=side, position_qty=self.parts.ledger.qty_of(symbol), qty=run.qty):
            self.parts.runs.finish(run, "rejected", reason="halted", now=self.clock())
            raise RunRefused(409, "trading is halted", run)
        self.parts.runs.touch(run, "risk")
        await self.parts.safety.accept(run, retried=retried)
        await self.parts.safety.send(run, self._to_risk(run, manual=True))
        return run

    async def _to_risk(self, run: Run, *, manual: bool) -> None:
        if not run.steps or run.steps[-1] != "risk":
            self.parts.runs.touch(run, "risk")
        await self.streams.publish(
            Stream.RISK_REQUESTS,
            RiskRequest(
                requestId=run.request_id,
                symbol=run.symbol,
                side=run.side,
                confidence=run.confidence or 0,
                qty=run.qty,
                price=run.price,
                manual=manual,
            ),
        )

    async def lookup_run(self, rid: str) -> Run | None:
        return await self.parts.runs.lookup(rid, self.session)

    async def on_signals(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(SignalMsg, batch)
        sized: list[Run] = []
        for sig in valid(msgs):
            run = await self.lookup_run(sig.requestId)
            if run is None or run.outcome is not None:
                continue
            run.strategy, run.confidence, run.price = sig.strategy, sig.confidence, sig.price
            self.audit(
                "run:signal",
                request_id=run.request_id,
                side=sig.side,
                confidence=run.confidence,
                strategy=run.strategy,
            )
            if self._size(run, sig.side):
                sized.append(run)
        if sized:  # committed before risk hears of them: a run found at start without a side never
            await self.parts.runs.durable(self.session)  # reached risk, so no order of it can be on its way
        for run in sized:
            await self._to_risk(run, manual=False)
        return failures(msgs)

    def _size(self, run: Run, side: str | None) -> bool:
        """Size a run from its signal; True when it goes to risk, else it is finished here."""
        now, ledger = self.clock(), self.parts.ledger
        if side is None or not run.price:
            self.parts.runs.finish(run, "hold", reason="no signal", now=now)
            return False
        run.side = side
        run.qty = size_order(
            side=side,
            equity=ledger.snapshot().equity,
            price=run.price,
            confidence=run.confidence or 0,
            risk_fraction=self.settings.risk_fraction,
            held=ledger.qty_of(run.symbol),
        )
        if run.qty <= 0:
            self.parts.runs.finish(
                run, "hold", reason="nothing to sell" if side == "sell" else "size rounds to zero", now=now
            )
        elif not allows(self.parts.halts.state, side=side, position_qty=ledger.qty_of(run.symbol), qty=run.qty):
            self.parts.runs.finish(run, "rejected", reason="halted", now=now)
        else:
            self.parts.runs.touch(run, "risk")  # its sizing is written by the caller's commit
            return True
        return False

    async def on_risk(self, batch: list[Delivery]) -> Handled:
        orders: list[Outgoing] = []
        msgs = decoded(RiskResponse, batch)
        for answer in valid(msgs):
            run = await self.lookup_run(answer.requestId)
            if run is None or run.outcome is not None:
                continue
            if not answer.ok:
                self.parts.runs.finish(run, "rejected", reason=answer.reason or "risk", now=self.clock())
                self.audit("run:rejected", request_id=run.request_id, result=answer.reason)
                continue
            self.parts.runs.step(run, "ordered")
            self.audit("run:order", request_id=run.request_id, target=run.order_id)
            orders.append(
                (
                    Stream.ORDERS,
                    OrderMsg(
                        orderId=run.order_id,
                        requestId=run.request_id,
                        symbol=run.symbol,
                        side=run.side,
                        qty=run.qty,
                        price=run.price,
                        traceId=answer.traceId,
                        **limit_fields(run.strategy),
                    ),
                )
            )
        if len(orders) < len(batch):  # a rejection is recorded before its ack (risk answers once)
            await self.parts.runs.durable(self.session)
        return Handled(failures(msgs), emit=orders)

    async def on_status(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(StatusMsg, batch)
        corrected = False
        for st in msgs:
            if isinstance(st, PoisonMessage):
                continue
            for f in st.ledger_fills():  # a partial fill moves /pnl/status at once
                self.parts.ledger.apply(f)
            if st.status == "filled":
                self.exec_failures = 0
            elif st.status == "failed":
                self.exec_failures += 1
            if st.status == "pending":  # partial fills (applied above), an adopted order's announcement
                continue
            run = await self.lookup_run(st.requestId)
            if run is None:
                continue
            if st.status == "filled" and run.outcome not in (None, "filled"):
                corrected = self.parts.safety.filled_after_all(run, st.orderId)
                continue
            self.parts.runs.finish(run, st.status, reason=st.reason, now=self.clock())
            self.audit(f"run:{st.status}", request_id=run.request_id, target=st.orderId, result=st.reason)
        if corrected:  # committed before the ack: a restart would not find the run open to resolve
            await self.parts.runs.durable(self.session)
        threshold = self.settings.exec_failure_halt_n
        self.parts.halts.apply(
            policy.execution_failures(self.parts.halts.state, consecutive=self.exec_failures, threshold=threshold)
        )
        await self._check_auto_halt()
        return failures(msgs)

    async def on_bars(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(BarMsg, batch)
        bars = valid(msgs)
        latest = {bar.symbol: bar.close for bar in bars}
        for sym, px in latest.items():
            self.parts.ledger.mark(sym, px)
        if self.settings.market_feed == "replay":  # the trading day follows the replayed market
            days = self.parts.days
            await days.follow_market(max((parse_iso(bar.barTs) for bar in bars), default=days.market_now))
        await self.roll_day()
        await self._check_auto_halt()
        if not self.parts.halts.state.halted:
            for sym in latest:
                if sym in self.settings.symbol_list and not self.parts.runs.in_flight(symbol=sym, manual=False):
                    try:
                        await self.start_run(
                            symbol=sym, side=None, qty=None, notional=None, request_id=None, manual=False
                        )
                    except RunRefused as exc:  # the database or Redis is out: the batch waits for it
                        raise exc.__cause__ or exc from None
        return failures(msgs)

    async def on_opt_result(self, d: Delivery) -> None:
        (result,) = decoded(OptResult, [d])
        if isinstance(result, PoisonMessage):
            raise result
        await self.parts.params.store_proposals(result)

    # -- loops -----------------------------------------------------------------------------
    async def on_auth_spike(self, addr: str) -> None:
        halts = self.parts.halts
        halts.apply(policy.auth_spike(halts.state, enabled=self.settings.auth_spike_halts, source=addr))

    async def status(self) -> dict[str, Any]:
        return {
            "halt": self.parts.halts.state.to_api(),
            "runsInFlight": self.parts.runs.in_flight(),
            "day": self.parts.days.day.date if self.parts.days.day else None,
            "consecutiveExecFailures": self.exec_failures,
        }

    # -- operator actions (used by the API and, through it, the CLI) ------------------------
    async def halt(self, *, reason: str, mode: str, note: str | None, actor: str, source: str | None) -> dict[str, Any]:
        result = self.parts.halts.halt(reason=reason, mode=mode, actor=actor, source=source, note=note)
        if mode == HaltMode.FLATTEN:
            result["flatten"] = await self.flatten()
        return result

    async def flatten(self) -> list[str]:
        rids = []
        for h in self.parts.ledger.holdings():
            with contextlib.suppress(RunRefused):
                run = await self.start_run(
                    symbol=h["symbol"], side="sell", qty=h["qty"], notional=None, request_id=f"flatten-{new_id()}"
                )
                rids.append(run.request_id)
        return rids

    async def unhalt(self, *, actor: str, source: str | None, note: str | None, force: bool) -> dict[str, Any]:
        """Resume trading. A forced unhalt of an automatic PnL halt keeps that halt from firing
        again until the next trading day: the operator has accepted today's PnL."""
        day = self.parts.days.current()
        overridden = policy.overrides(self.parts.halts.state, force=force)
        result = self.parts.halts.unhalt(
            actor=actor, source=source, note=note, force=force, pnl_pct=self.parts.days.percent(), limits=day.limits
        )
        if overridden is not None:
            self.overridden.add(overridden)
        return result
