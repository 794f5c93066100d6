"""The risk manager's parts, built in one place: the rules (risk.yaml), the ledger replayed from
the fills, and the book of reservations rebuilt from where the approved orders are now (the
streams, then the database; trading/risk_recovery.py decides). Also the terms of orders adopted
from the exchange, read here at start and by the running risk manager when one is announced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cli_trading.agents.wiring import Services
from cli_trading.config import load_yaml
from cli_trading.contracts import (
    ADOPTED_PREFIX,
    Group,
    OrderMsg,
    RiskResponse,
    Stream,
)
from cli_trading.db import exchange_repo, repo, run_repo
from cli_trading.db.models import Order
from cli_trading.halt.gate import HaltGate
from cli_trading.isotime import parse_iso
from cli_trading.streamops import unacknowledged
from cli_trading.trading import risk
from cli_trading.trading.ledger import ZERO, Ledger, replay
from cli_trading.trading.risk_recovery import InFlight, filled_by_request, rebuild

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


async def adopted_terms(sess: Any, pending: Sequence[Order]) -> dict[str, risk.Request]:
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
