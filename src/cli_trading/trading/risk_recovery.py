"""The risk manager's reservations rebuilt at start from durable state (pure: facts → book).

Risk keeps a reservation for every order it approved that is not settled yet (`RiskBook`); the
book lives in memory, so a restarted risk manager must find those orders again, or the exposure
limits could be exceeded while they are on their way. An approval is only known durably by where
the order is now, and it is always somewhere along one path (each hand-over is atomic: a
consumer's outputs are written with its acks, the executor claims an order before it
acknowledges it):

1. `risk.responses`, approved, not acknowledged yet by the orchestrator;
2. `exec.orders`, not acknowledged yet by the trade executor;
3. the `orders` table, `pending`: the executor has it (live: resting at the exchange, or its
   answer being looked up);
4. settled: the `orders` row is final and its fills are in `fills` (the ledger the risk manager
   replays), its final exec.status either applied or still to be read by the risk manager, which
   releases it then. Never reserved again.

Requests risk has not answered yet (pending in `risk.requests`) are not reserved: they are
decided after the start, and reserved then if approved. A risk rejection is in none of these.
agents/risk.py reads the facts (streams first, then the database: an order moving on meanwhile
is seen at its later place, or twice, never not at all); this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cli_trading.trading.ledger import ZERO, FillRecord
from cli_trading.trading.risk import Request, RiskBook


@dataclass(frozen=True)
class InFlight:
    """What durable state says of the orders approved by risk and not settled, at start."""

    answered: Sequence[str] = ()  # request ids approved on risk.responses, not taken by the orchestrator yet
    queued: Sequence[Request] = ()  # orders on exec.orders the executor has not acknowledged yet
    orders: Mapping[str, str] = field(default_factory=dict)  # request id → its `orders` row's status
    sized: Mapping[str, Request] = field(default_factory=dict)  # request id → its run's sizing (what risk was asked)
    filled: Mapping[str, Decimal] = field(default_factory=dict)  # request id → its order's quantity in `fills`


@dataclass(frozen=True)
class Rebuilt:
    book: RiskBook
    unknown: list[str]  # in flight but with no sizing to reserve (an order adopted from the exchange: no run)


def filled_by_request(fills: Iterable[FillRecord], order_of: Mapping[str, str]) -> dict[str, Decimal]:
    """The quantity each order in `order_of` (order id → request id) has in the fills."""
    out: dict[str, Decimal] = {}
    for f in fills:
        rid = order_of.get(f.order_id)
        if rid is not None:
            out[rid] = out.get(rid, ZERO) + f.qty
    return out


def in_flight(found: InFlight, *, day: str) -> tuple[list[Request], list[str]]:
    """The requests to reserve (each once, as approved: the queued order's own terms, else its
    run's), and the in-flight request ids with nothing to reserve them from."""
    terms = {r.request_id: r for r in found.queued}
    ids = dict.fromkeys([*found.answered, *terms, *(rid for rid, st in found.orders.items() if st == "pending")])
    out: list[Request] = []
    unknown: list[str] = []
    for rid in ids:
        if found.orders.get(rid, "pending") != "pending":  # settled: its fills are in the ledger already
            continue
        r = terms.get(rid) or found.sized.get(rid)
        if r is None:
            unknown.append(rid)
        else:
            out.append(r._replace(day=day))
    return out, unknown


def rebuild(found: InFlight, *, day: str, day_notional: Decimal) -> Rebuilt:
    """The book a risk manager starts with: every order in flight reserved, less what it has
    filled already (that part is a position in the replayed ledger), and today's notional — the
    fills of the day (`day_notional`) plus what is still reserved, as the running book counts an
    order from its approval."""
    book = RiskBook()
    book.add_day(day, day_notional)
    requests, unknown = in_flight(found, day=day)
    for r in requests:
        book.reserve(r)
        done = found.filled.get(r.request_id, ZERO)
        if done > 0:
            book.fill(r.request_id, done)  # the rest stays reserved; a later report of it changes nothing
        book.add_day(day, max(r.qty - done, ZERO) * r.price)
    return Rebuilt(book, unknown)
