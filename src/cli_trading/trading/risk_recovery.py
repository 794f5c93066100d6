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
agents/risk_wiring.py reads the facts (streams first, then the database: an order moving on
meanwhile is seen at its later place, or twice, never not at all); this module decides.

The same places give the rate rule's window (`RiskBook.recent`, the approvals of the last
minute): an approval of the last minute is on one of the two streams or has an `orders` row
claimed since — settled ones included, which are no longer in flight but still count for the rate.

An order adopted from the exchange (live, `EXCHANGE_UNKNOWN_ORDERS=adopt`) was never approved by
risk and has no run, but while it is `pending` it is an open order of ours: reserved at its
`orders` row's terms (symbol, side, amount) at its limit price, or at the symbol's mark for a
market order, and never counted as an approval (rate, daily cap). One adopted while the risk
manager runs is announced on exec.status (`pending`, no fills: exchanges/desk.py); the running
risk manager reserves it then, by the same terms (`priced`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from cli_trading.contracts import ADOPTED_PREFIX
from cli_trading.trading.ledger import ZERO, FillRecord
from cli_trading.trading.risk import ONE_MINUTE, Request, RiskBook


@dataclass(frozen=True)
class InFlight:
    """What durable state says of the orders approved by risk and not settled, at start."""

    answered: Sequence[str] = ()  # request ids approved on risk.responses, not taken by the orchestrator yet
    queued: Sequence[Request] = ()  # orders on exec.orders the executor has not acknowledged yet
    orders: Mapping[str, str] = field(default_factory=dict)  # request id → its `orders` row's status
    sized: Mapping[str, Request] = field(default_factory=dict)  # request id → its run's sizing (what risk was asked)
    filled: Mapping[str, Decimal] = field(default_factory=dict)  # request id → its order's quantity in `fills`
    # request id → a pending order adopted from the exchange (price 0: a market order)
    adopted: Mapping[str, Request] = field(default_factory=dict)
    marks: Mapping[str, Decimal] = field(default_factory=dict)  # symbol → last mark (an adopted market order's price)
    # (request id, a time at or after its approval) wherever an approval was seen: the rate window
    approved: Sequence[tuple[str, datetime]] = ()


@dataclass(frozen=True)
class Rebuilt:
    book: RiskBook
    unknown: list[str]  # in flight but with nothing to reserve it at (no run; adopted at market, no mark)


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
        adopted = priced(found.adopted[rid], found.marks) if rid in found.adopted else None
        r = terms.get(rid) or found.sized.get(rid) or adopted
        if r is None:
            unknown.append(rid)
        else:
            out.append(r._replace(day=day))
    return out, unknown


def priced(adopted: Request, marks: Mapping[str, Decimal]) -> Request | None:
    """An adopted order's terms as reserved: at its limit, else (a market order, price 0) at the
    symbol's mark; None without one."""
    if adopted.price > 0:
        return adopted
    mark = marks.get(adopted.symbol)
    return adopted._replace(price=mark) if mark else None


def rate_window(approved: Iterable[tuple[str, datetime]], *, now: datetime) -> deque[datetime]:
    """The rate rule's window at start (`RiskBook.recent`): one time per request approved within
    the minute before `now`, oldest first. Every place an approval is seen at gives a time at or
    after it (the answer's own, the order's sending, its row's claim), so a request's earliest is
    the nearest, and a late one only keeps it in the window a little longer; a time ahead of
    `now` (another process's clock) counts as now. Adopted orders were never approved."""
    first: dict[str, datetime] = {}
    for rid, at in approved:
        if not rid.startswith(ADOPTED_PREFIX) and (rid not in first or at < first[rid]):
            first[rid] = at
    return deque(sorted(min(at, now) for at in first.values() if now - at <= ONE_MINUTE))


def rebuild(found: InFlight, *, day: str, day_notional: Decimal, now: datetime) -> Rebuilt:
    """The book a risk manager starts with: every order in flight reserved, less what it has
    filled already (that part is a position in the replayed ledger), today's notional — the
    fills of the day (`day_notional`) plus what is still reserved, as the running book counts an
    order from its approval — and the rate window of the approvals of the last minute."""
    book = RiskBook()
    book.add_day(day, day_notional)
    requests, unknown = in_flight(found, day=day)
    for r in requests:
        book.reserve(r)
        done = found.filled.get(r.request_id, ZERO)
        if done > 0:
            book.fill(r.request_id, done)  # the rest stays reserved; a later report of it changes nothing
        if r.request_id not in found.adopted:  # not approved by risk: its fills count, as they come
            book.add_day(day, max(r.qty - done, ZERO) * r.price)
    book.recent = rate_window(found.approved, now=now)
    return Rebuilt(book, unknown)
