"""The risk manager's reservations rebuilt at start from what durable state says of the orders in
flight (trading/risk_recovery.py): pure, no service."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord, Ledger
from cli_trading.trading.risk import Request, RiskBook, RiskRules, evaluate
from cli_trading.trading.risk_recovery import InFlight, filled_by_request, in_flight, rate_window, rebuild

D = Decimal
DAY = "2026-03-14"
NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)


def req(rid: str, qty: str = "0.1", side: str = "buy", price: str = "20000", symbol: str = "BTC-USD") -> Request:
    return Request(rid, symbol, side, D(qty), D(price), 0.9, False, DAY)


def test_nothing_in_flight_is_an_empty_book_with_the_days_fills() -> None:
    rebuilt = rebuild(InFlight(), day=DAY, day_notional=D(500), now=NOW)
    assert not rebuilt.book.reserved and rebuilt.book.reserved_cash == 0
    assert rebuilt.book.day_notional(DAY) == D(500) and rebuilt.unknown == []


def test_every_place_an_approved_order_can_be_is_reserved_once() -> None:
    found = InFlight(
        answered=["answered", "everywhere"],  # approved, the orchestrator has not taken the answer yet
        queued=[req("queued", "0.05"), req("everywhere")],  # on exec.orders, the executor has not taken them yet
        orders={"at-executor": "pending", "everywhere": "pending"},
        sized={"answered": req("answered", "0.02"), "at-executor": req("at-executor", "0.03"), "everywhere": req("x")},
    )
    book = rebuild(found, day=DAY, day_notional=D(0), now=NOW).book
    assert sorted(book.reserved) == ["answered", "at-executor", "everywhere", "queued"]
    # 0.02 + 0.05 + 0.03 + 0.1 BTC at 20000
    assert book.reserved_cash == D("4000.00") and book.pending_notional("BTC-USD") == D("4000.00")


def test_a_settled_order_is_never_reserved_again() -> None:
    """Its row is final: its fills are in the replayed ledger, its final status is applied or
    on its way (reserving it would never be released if it was applied already)."""
    found = InFlight(
        answered=["a"], queued=[req("b")], orders={"a": "filled", "b": "rejected", "c": "failed"}, sized={"a": req("a")}
    )
    assert not rebuild(found, day=DAY, day_notional=D(0), now=NOW).book.reserved


def test_the_queued_orders_own_terms_come_before_its_runs() -> None:
    found = InFlight(queued=[req("q", "0.07", price="19000")], sized={"q": req("q", "0.5")})
    requests, _ = in_flight(found, day=DAY)
    assert [(r.qty, r.price, r.day) for r in requests] == [(D("0.07"), D("19000"), DAY)]


def test_an_order_in_flight_with_nothing_to_reserve_it_at_is_reported_not_reserved() -> None:
    """No run, and not adopted (its row read without its terms)."""
    rebuilt = rebuild(InFlight(orders={"x": "pending"}), day=DAY, day_notional=D(0), now=NOW)
    assert rebuilt.unknown == ["x"] and not rebuilt.book.reserved


def test_a_pending_adopted_order_is_reserved_at_its_limit_less_its_fills_and_is_not_an_approval() -> None:
    """Adopted from the exchange: no run, but an open order of ours, so exposure counts it; never
    approved by risk, so neither the daily cap's approvals nor the rate window do."""
    limit = req("adopted-L", "0.1", price="19000")
    found = InFlight(
        orders={"adopted-L": "pending"},
        adopted={"adopted-L": limit},
        filled={"adopted-L": D("0.04")},
        approved=[("adopted-L", NOW)],  # its row was claimed just now (adopted): no approval
    )
    rebuilt = rebuild(found, day=DAY, day_notional=D(0), now=NOW)
    book = rebuilt.book
    assert rebuilt.unknown == [] and book.reserved["adopted-L"].qty == D("0.06")
    assert book.reserved_cash == D("1140.00") and book.pending_notional("BTC-USD") == D("1140.00")  # 0.06 × 19000
    assert book.day_notional(DAY) == 0 and not book.recent
    book.release("adopted-L")  # its final exec.status ends it, as any order's
    assert not book.reserved and book.reserved_cash == 0


def test_an_adopted_market_order_is_reserved_at_the_mark_or_reported_without_one() -> None:
    market = req("adopted-M", "0.5", side="sell", price="0")
    found = InFlight(orders={"adopted-M": "pending"}, adopted={"adopted-M": market})
    rebuilt = rebuild(found, day=DAY, day_notional=D(0), now=NOW)
    assert rebuilt.unknown == ["adopted-M"] and not rebuilt.book.reserved  # no price to reserve it at
    marked = rebuild(replace(found, marks={"BTC-USD": D(21000)}), day=DAY, day_notional=D(0), now=NOW).book
    assert marked.reserved["adopted-M"].price == D(21000) and marked.held_qty("BTC-USD") == D("0.5")


def test_a_settled_adopted_order_is_not_reserved() -> None:
    found = InFlight(orders={"adopted-F": "filled"}, adopted={"adopted-F": req("adopted-F")})
    assert not rebuild(found, day=DAY, day_notional=D(0), now=NOW).book.reserved


def test_the_rate_window_holds_each_approval_of_the_last_minute_once_at_its_earliest_time() -> None:
    at = [NOW - timedelta(seconds=s) for s in (70, 60, 30, 5)]
    approved = [
        ("old", at[0]),  # more than a minute ago: out
        ("edge", at[1]),  # exactly a minute: still in, as the running rule keeps it
        ("moved", at[2]),  # seen on a stream (its answer's time) ...
        ("moved", at[3]),  # ... and at its later place (its row's claim): the earlier counts
        ("ahead", NOW + timedelta(seconds=3)),  # another process's clock ahead: counted as now
        ("adopted-x", at[3]),  # adopted from the exchange: never approved
    ]
    assert list(rate_window(approved, now=NOW)) == [at[1], at[2], NOW]


def test_after_a_restart_the_rate_rule_rejects_what_the_running_one_would_have() -> None:
    """Two approvals in the last minute, limit two: the running book rejects a third; so does the
    rebuilt one, where an empty window (the old start) approved it; a minute later both approve."""
    rules = RiskRules(max_orders_per_minute=2, min_confidence=0)
    ledger = Ledger(D(100000))

    def verdict(book: RiskBook, rid: str, now: datetime) -> str | None:
        return evaluate(req(rid, "0.01"), rules=rules, halt=HaltState(), ledger=ledger, book=book, now=now)

    running = RiskBook()
    t1, t2 = NOW - timedelta(seconds=40), NOW - timedelta(seconds=10)
    assert verdict(running, "a", t1) is None and verdict(running, "b", t2) is None
    found = InFlight(approved=[("a", t1), ("b", t2)])
    rebuilt = rebuild(found, day=DAY, day_notional=D(0), now=NOW).book
    assert verdict(running, "c", NOW) == verdict(rebuilt, "c", NOW) == "max_orders_per_minute"
    assert verdict(RiskBook(), "c", NOW) is None  # the window the old start began with
    later = t1 + timedelta(seconds=61)  # a's approval has left the window
    assert verdict(running, "d", later) is None and verdict(rebuilt, "d", later) is None


def test_a_partly_filled_order_keeps_the_rest_reserved_and_its_later_reports_count_once() -> None:
    found = InFlight(orders={"p": "pending"}, sized={"p": req("p", "0.1")}, filled={"p": D("0.04")})
    rebuilt = rebuild(found, day=DAY, day_notional=D(800), now=NOW)  # the 0.04 filled today
    book = rebuilt.book
    assert book.reserved["p"].qty == D("0.06") and book.reserved_cash == D("1200.00")
    assert book.day_notional(DAY) == D("2000.00")  # the fills and the rest: the whole order, as approved
    book.fill("p", D("0.04"))  # its pending status read again after the start: nothing new
    assert book.reserved_cash == D("1200.00")
    book.fill("p", D("0.07"))  # a new trade
    assert book.reserved_cash == D("600.00")
    book.release("p")  # its final status
    assert not book.reserved and book.reserved_cash == 0 and book.pending_notional() == 0


def test_a_sell_in_flight_holds_its_quantity() -> None:
    book = rebuild(
        InFlight(answered=["s"], sized={"s": req("s", "0.2", side="sell")}), day=DAY, day_notional=D(0), now=NOW
    ).book
    assert book.held_qty("BTC-USD") == D("0.2") and book.reserved_cash == 0


def test_the_rebuilt_book_is_the_running_one() -> None:
    """What the running risk manager had — approvals, one partial fill — is what the start rebuilds."""
    running = RiskBook()
    for r in (req("a", "0.1"), req("b", "0.05", side="sell"), req("c", "0.2", symbol="ETH-USD", price="1000")):
        running.reserve(r)
    running.fill("a", D("0.03"))
    found = InFlight(
        answered=["c"],
        queued=[req("b", "0.05", side="sell")],
        orders={"a": "pending"},
        sized={"a": req("a", "0.1"), "c": req("c", "0.2", symbol="ETH-USD", price="1000")},
        filled={"a": D("0.03")},
    )
    book = rebuild(found, day=DAY, day_notional=D(0), now=NOW).book
    assert book.reserved == running.reserved
    assert book.reserved_cash == running.reserved_cash
    for sym in ("BTC-USD", "ETH-USD", None):
        assert book.pending_notional(sym) == running.pending_notional(sym)
    assert book.held_qty("BTC-USD") == running.held_qty("BTC-USD")


def test_an_order_that_would_breach_the_limit_with_the_in_flight_exposure_is_rejected() -> None:
    rules = RiskRules(max_order_notional=D(2500), max_position_notional=D(10000), max_total_exposure=D(3000))
    book = rebuild(
        InFlight(queued=[req("in-flight", "0.1")]), day=DAY, day_notional=D(0), now=NOW
    ).book  # 2000 reserved

    def verdict(qty: str) -> str | None:
        return evaluate(req("new", qty), rules=rules, halt=HaltState(), ledger=Ledger(D(10000)), book=book, now=NOW)

    assert verdict("0.06") == "max_total_exposure"  # 2000 + 1200 > 3000; an empty book would approve it
    assert verdict("0.04") is None  # 2000 + 800: the in-flight order is counted once


def test_filled_by_request_sums_each_orders_fills() -> None:
    fills = [
        FillRecord("ord-a", "BTC-USD", "buy", D("0.01"), D(1), D(0), "t1"),
        FillRecord("ord-a", "BTC-USD", "buy", D("0.02"), D(1), D(0), "t2"),
        FillRecord("ord-z", "BTC-USD", "buy", D("1"), D(1), D(0)),  # an order not in flight
    ]
    assert filled_by_request(fills, {"ord-a": "a", "ord-b": "b"}) == {"a": D("0.03")}
