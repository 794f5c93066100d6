"""risk-manager (7004): risk.requests → rules → risk.responses. Keeps its own ledger from
exec.status and market.bars, and reservations for approved orders not yet settled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from cli_trading import metrics
from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.bus import Delivery, Handled, MessageResult, Outgoing, PoisonMessage, decoded, failures, valid
from cli_trading.config import Settings, load_yaml
from cli_trading.contracts import (
    ADOPTED_PREFIX,
    BarMsg,
    Group,
    OrderMsg,
    RiskRequest,
    RiskResponse,
    StatusMsg,
    Stream,
    iso,
)
from cli_trading.db import exchange_repo, repo, run_repo
from cli_trading.exchanges.keys import BALANCES_KEY, MARKETS_KEY
from cli_trading.exchanges.markets import MarketRules
from cli_trading.halt.gate import HaltGate
from cli_trading.isotime import parse_iso
from cli_trading.streamops import unacknowledged
from cli_trading.trading import risk
from cli_trading.trading.ledger import ZERO, Ledger, replay
from cli_trading.trading.risk_recovery import InFlight, filled_by_request, priced, rebuild

M = TypeVar("M", bound=BaseModel)


def load_rules(path: Any) -> risk.RiskRules:
    return load_yaml(path, risk.RiskFile).risk


@dataclass(frozen=True)
class RiskParts:
    rules: risk.RiskRules  # risk.yaml
    gate: HaltGate  # the halt flag, read before each batch
    ledger: Ledger  # positions and cash from the fills, marked at the bars' closes
    book: risk.RiskBook  # reservations of approved orders not yet settled; today's notional


async def wire_risk(svc: Services) -> RiskParts:
    """The risk manager's parts from the settings (risk.yaml, the starting cash) and the database:
    the ledger replayed from the fills and marks, the reservations of the orders still in flight
    (trading/risk_recovery.py), today's notional (the daily cap survives restarts) and the rate
    rule's window (the approvals of the last minute)."""
    s, now = svc.settings, svc.clock()
    today = now.date().isoformat()
    async with svc.sessions() as sess:
        found, order_of = await found_in_flight(svc.redis, sess, now=now)  # before the fills: see risk_recovery
        fills = await repo.all_fills(sess)
        ledger = replay(s.starting_cash, fills, await repo.load_marks(sess))
        day_notional = await exchange_repo.day_notional(sess, day=today)
    found = replace(found, filled=filled_by_request(fills, order_of), marks=ledger.marks)
    rebuilt = rebuild(found, day=today, day_notional=day_notional, now=now)
    if rebuilt.book.reserved or rebuilt.unknown or rebuilt.book.recent:
        svc.log.info(
            "reservations rebuilt from the orders in flight",
            reserved=len(rebuilt.book.reserved),
            adopted=sum(1 for rid in rebuilt.book.reserved if rid in found.adopted),
            notional=str(rebuilt.book.pending_notional()),
            approvedLastMinute=len(rebuilt.book.recent),
            notReserved=rebuilt.unknown[:10],
        )
    return RiskParts(load_rules(s.config_file("risk.yaml")), HaltGate(svc.redis), ledger, rebuilt.book)


async def found_in_flight(redis: Any, sess: Any, *, now: datetime) -> tuple[InFlight, dict[str, str]]:
    """Where the orders risk approved are now (trading/risk_recovery.py), read downstream: the
    streams first, then the `orders` table, so that an order moving on meanwhile is found at its
    later place. Also returned: order id → request id of the orders rows read (their fills)."""
    approvals = [
        m
        for m in _entries(RiskResponse, await unacknowledged(redis, Stream.RISK_RESPONSES, Group.ORCHESTRATOR))
        if m.ok
    ]
    answered = [m.requestId for m in approvals]
    queued = _entries(OrderMsg, await unacknowledged(redis, Stream.ORDERS, Group.EXEC))
    ids = [*answered, *(m.requestId for m in queued)]
    rows = [*await repo.stale_pending_orders(sess), *await repo.orders_of_requests(sess, request_ids=ids)]
    claimed = await repo.orders_since(sess, since=now - risk.ONE_MINUTE)  # settled ones too: the rate
    runs = await run_repo.get_runs(sess, request_ids=[*ids, *(o.request_id for o in rows)])
    sized = {
        r.request_id: risk.Request(r.request_id, r.symbol, r.side, r.qty, r.price, r.confidence or 0.0, r.manual)
        for r in runs
        if r.side and r.qty and r.price
    }
    terms = [
        risk.Request(m.requestId, m.symbol, m.side, m.qty, m.price, 0.0)
        for m in queued
        if m.price  # the orchestrator always sends the run's price; without one, the run's sizing
    ]
    orders = {o.request_id: o.status for o in rows}  # the later read of a row wins
    adopted = [o for o in rows if o.request_id.startswith(ADOPTED_PREFIX) and orders[o.request_id] == "pending"]
    sent: list[RiskResponse | OrderMsg] = [*approvals, *queued]
    approved = [*((m.requestId, _at(m.ts, now)) for m in sent), *claimed]
    found = InFlight(
        answered,
        terms,
        orders,
        sized,
        adopted=await adopted_terms(sess, adopted),
        approved=approved,
    )
    return found, {o.order_id: o.request_id for o in rows}


async def adopted_terms(sess: Any, pending: list[Any]) -> dict[str, risk.Request]:
    """The terms of pending orders adopted from the exchange (`orders` rows): their amount, at
    their limit price (price 0: a market order, priced at the mark by `risk_recovery.priced`)."""
    limits = {o.order_id: o.limit_price for o in await exchange_repo.open_orders(sess)} if pending else {}
    return {
        o.request_id: risk.Request(o.request_id, o.symbol, o.side, o.qty, limits.get(o.order_id) or ZERO, 0.0)
        for o in pending
    }


def _at(ts: str, now: datetime) -> datetime:
    """A message's time (`ts`, its sender's clock, UTC); a message without a readable one counts as
    sent now (kept in the rate window for the longest)."""
    try:
        return parse_iso(ts)
    except ValueError:
        return now


def _entries(model: type[M], entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[M]:
    """The stream entries that are valid `model` messages (a bad one is the consumer's dead letter)."""
    out: list[M] = []
    for _, fields in entries:
        try:
            out.append(model.model_validate_json(fields[b"data"]))
        except (KeyError, ValidationError):
            continue
    return out


class RiskManager(Agent[RiskParts]):
    name = "risk-manager"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.decisions = {"approved": 0, "rejected": 0}

    async def wire(self, services: Services) -> RiskParts:
        return await wire_risk(services)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(Stream.RISK_REQUESTS, Group.RISK, self.handle_requests, key="requestId"),
            Subscription(Stream.STATUS, Group.RISK, self.handle_status, key="statusId"),
            Subscription(Stream.BARS, Group.RISK, self.handle_bars),
        ]

    async def _venue(self) -> Callable[[str], risk.Venue] | None:
        """Live mode: the exchange's market rules and balances the executor publishes in Redis."""
        if self.settings.trading_mode != "live":
            return None
        markets_raw, balances_raw = await self.redis.mget(MARKETS_KEY, BALANCES_KEY)
        markets = {k: MarketRules.from_json(v) for k, v in orjson.loads(markets_raw or b"{}").items()}
        balances = {k: Decimal(v) for k, v in orjson.loads(balances_raw or b"{}").items()}
        s = self.settings
        caps = risk.LiveCaps(s.live_max_order_notional, s.live_max_daily_notional, s.live_max_open_orders)

        def venue(symbol: str) -> risk.Venue:
            m = markets.get(symbol)
            held = balances.get(m.base, Decimal(0)) if m and balances_raw else None
            return risk.Venue(caps, m, held)

        return venue

    async def handle_requests(self, batch: list[Delivery]) -> Handled:
        parts = self.parts
        halt = await parts.gate.read()
        venue = await self._venue()
        day = self.clock().date().isoformat()
        out: list[MessageResult] = []
        responses: list[Outgoing] = []
        now = self.clock()
        for d in batch:
            try:
                msg = RiskRequest.model_validate(d.payload)
            except ValidationError as exc:
                out.append(PoisonMessage(f"invalid risk request: {exc.errors()[0]['msg']}"))
                continue
            req = risk.Request(msg.requestId, msg.symbol, msg.side, msg.qty, msg.price, msg.confidence, msg.manual, day)
            reason = risk.evaluate(
                req,
                rules=parts.rules,
                halt=halt,
                ledger=parts.ledger,
                book=parts.book,
                now=now,
                venue=venue(msg.symbol) if venue else None,
            )
            if reason is None:
                parts.book.reserve(req)
                parts.book.add_day(day, req.qty * req.price)
                self.decisions["approved"] += 1
            else:
                metrics.RISK_REJECTIONS.labels(reason).inc()
                self.decisions["rejected"] += 1
            self.audit(
                "risk:" + ("approved" if reason is None else "rejected"),
                request_id=msg.requestId,
                result=reason,
                target=msg.symbol,
            )
            responses.append(
                (
                    Stream.RISK_RESPONSES,
                    # ts: the decision's time, the one the rate window holds (rebuilt from it at a restart)
                    RiskResponse(
                        requestId=msg.requestId, ok=reason is None, reason=reason, traceId=msg.traceId, ts=iso(now)
                    ),
                )
            )
            out.append(None)
        return Handled(out, emit=responses)

    async def handle_status(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(StatusMsg, batch)
        ledger, book = self.parts.ledger, self.parts.book
        await self._reserve_adopted(valid(msgs))
        for st in msgs:
            if isinstance(st, PoisonMessage):
                continue
            for f in st.ledger_fills():  # partial fills of an order still open too
                ledger.apply(f)
            if st.status != "pending":  # the order's end: its reservation goes
                book.release(st.requestId)
            elif st.fills:  # partly filled (qty: so far): that part is a position now, the rest stays reserved
                book.fill(st.requestId, st.qty)
        return failures(msgs)

    async def _reserve_adopted(self, statuses: list[StatusMsg]) -> None:
        """Orders adopted from the exchange since the start (announced `pending`, exchanges/desk.py)
        are reserved like those found at start, by their `orders` rows' terms, before their fills
        (if any) are applied; a settled one (an old message delivered again) is not."""
        book = self.parts.book
        rids = {
            st.requestId
            for st in statuses
            if st.status == "pending" and st.requestId.startswith(ADOPTED_PREFIX) and st.requestId not in book.reserved
        }
        if not rids:
            return
        async with self.session() as sess:
            rows = [o for o in await repo.orders_of_requests(sess, request_ids=sorted(rids)) if o.status == "pending"]
            terms = await adopted_terms(sess, rows)
        day = self.clock().date().isoformat()
        for adopted in terms.values():
            if (r := priced(adopted, self.parts.ledger.marks)) is not None:
                book.reserve(r._replace(day=day))
                self.log.info("reserved an order adopted from the exchange", requestId=r.request_id, qty=str(r.qty))

    async def handle_bars(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(BarMsg, batch)
        for bar in valid(msgs):
            self.parts.ledger.mark(bar.symbol, bar.close)
        return failures(msgs)

    async def status(self) -> dict[str, Any]:
        return {
            "rules": self.parts.rules.model_dump(mode="json"),
            "decisions": self.decisions,
            "reservations": len(self.parts.book.reserved),
        }
