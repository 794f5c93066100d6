"""Pre-trade risk rules: one test (at least) per rejection reason, plus approval and the book."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_trading.contracts import HaltMode
from cli_trading.exchanges.markets import MarketRules
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord, Ledger
from cli_trading.trading.risk import LiveCaps, Request, RiskBook, RiskRules, Venue, evaluate

D = Decimal
NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)
OPEN = HaltState()


def req(
    side: str = "buy",
    qty: str = "0.01",
    price: str = "20000",
    confidence: float = 0.9,
    *,
    symbol: str = "BTC-USD",
    rid: str = "r1",
    manual: bool = False,
) -> Request:
    return Request(rid, symbol, side, D(qty), D(price), confidence, manual)


def ledger(cash: str = "10000", **holdings: tuple[str, str]) -> Ledger:
    """A ledger holding qty@price per symbol (symbol names with '_' for '-')."""
    lg = Ledger(D(cash))
    for i, (sym, (qty, price)) in enumerate(holdings.items()):
        lg.apply(FillRecord(f"seed-{i}", sym.replace("_", "-"), "buy", D(qty), D(price), D("0")))
    return lg


def check(
    r: Request,
    *,
    rules: RiskRules | None = None,
    halt: HaltState | None = OPEN,
    lg: Ledger | None = None,
    book: RiskBook | None = None,
    now: datetime = NOW,
) -> str | None:
    return evaluate(
        r, rules=rules or RiskRules(), halt=halt, ledger=lg or ledger(), book=book or RiskBook(), now=now
    )


def test_approves_a_reasonable_buy_and_sell() -> None:
    assert check(req()) is None
    lg = ledger("10000", BTC_USD=("0.1", "20000"))
    assert check(req("sell", "0.05"), lg=lg) is None


# -- halted ----------------------------------------------------------------------------------
def test_halted() -> None:
    h = HaltState(True, "manual", HaltMode.HALT)
    lg = ledger("100000", BTC_USD=("1", "20000"))
    assert check(req("buy"), halt=h, lg=lg) == "halted"
    assert check(req("sell", "0.1"), halt=h, lg=lg) == "halted"


@pytest.mark.parametrize("mode", [HaltMode.REDUCE_ONLY, HaltMode.FLATTEN])
def test_reduce_only_lets_sells_of_holdings_through(mode: str) -> None:
    h = HaltState(True, "manual", mode)
    lg = ledger("100000", BTC_USD=("0.1", "20000"))
    assert check(req("buy"), halt=h, lg=lg) == "halted"
    assert check(req("sell", "0.1"), halt=h, lg=lg) is None
    assert check(req("sell", "0.2"), halt=h, lg=lg) == "halted"


def test_reduce_only_counts_sells_already_reserved() -> None:
    h = HaltState(True, "manual", HaltMode.REDUCE_ONLY)
    lg = ledger("100000", BTC_USD=("0.1", "20000"))
    book = RiskBook()
    book.reserve(req("sell", "0.08", rid="earlier"))
    assert check(req("sell", "0.05"), halt=h, lg=lg, book=book) == "halted"
    assert check(req("sell", "0.02"), halt=h, lg=lg, book=book) is None


def test_halt_state_unknown() -> None:
    assert check(req(), halt=None) == "halt_state_unknown"
    assert check(req("sell"), halt=None) == "halt_state_unknown"


# -- confidence ------------------------------------------------------------------------------
def test_min_confidence() -> None:
    assert check(req(confidence=0.5)) == "min_confidence"
    assert check(req(confidence=0.55)) is None
    assert check(req(confidence=0.2), rules=RiskRules(min_confidence=0.1)) is None


def test_manual_order_bypasses_confidence() -> None:
    assert check(req(confidence=0.0, manual=True)) is None
    strict = RiskRules(manual_bypasses_confidence=False)
    assert check(req(confidence=0.0, manual=True), rules=strict) == "min_confidence"


# -- trading window --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("at", "expected"),
    [(time(8, 59), "trading_window"), (time(9, 0), None), (time(12, 0), None), (time(17, 0), None),
     (time(17, 1), "trading_window"), (time(23, 0), "trading_window")],
)
def test_trading_window(at: time, expected: str | None) -> None:
    rules = RiskRules(trading_window_utc=(time(9, 0), time(17, 0)))
    assert check(req(), rules=rules, now=datetime.combine(NOW.date(), at, UTC)) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [(time(22, 0), None), (time(23, 59), None), (time(0, 0), None), (time(1, 59), None), (time(2, 0), None),
     (time(2, 1), "trading_window"), (time(12, 0), "trading_window"), (time(21, 59), "trading_window")],
)
def test_trading_window_over_midnight(at: time, expected: str | None) -> None:
    rules = RiskRules(trading_window_utc=(time(22, 0), time(2, 0)))
    assert check(req(), rules=rules, now=datetime.combine(NOW.date(), at, UTC)) == expected


def test_no_window_means_always() -> None:
    assert check(req(), now=datetime(2026, 3, 14, 3, 33, tzinfo=UTC)) is None


# -- side ------------------------------------------------------------------------------------
def test_side_blocked() -> None:
    rules = RiskRules(blocked_sides=["sell"])
    lg = ledger("10000", BTC_USD=("0.1", "20000"))
    assert check(req("sell", "0.05"), rules=rules, lg=lg) == "side_blocked"
    assert check(req("buy"), rules=rules, lg=lg) is None


# -- notional and cash -----------------------------------------------------------------------
def test_max_order_notional() -> None:
    assert check(req(qty="1", price="2500.01"), lg=ledger("100000")) == "max_order_notional"
    assert check(req(qty="1", price="2500"), lg=ledger("100000")) is None
    lg = ledger("100000", BTC_USD=("1", "20000"))
    # a sell only reduces a (spot) position: closing one larger than the cap must stay possible
    assert check(req("sell", "0.2"), lg=lg) is None


def test_insufficient_cash() -> None:
    assert check(req(qty="1", price="2000"), lg=ledger("1999.99")) == "insufficient_cash"
    assert check(req(qty="1", price="2000"), lg=ledger("2000")) is None


def test_insufficient_cash_counts_reservations() -> None:
    lg = ledger("3000")
    book = RiskBook()
    book.reserve(req(qty="1", price="2000", rid="earlier"))
    assert book.reserved_cash == D("2000")
    assert check(req(qty="1", price="1500"), lg=lg, book=book) == "insufficient_cash"
    assert check(req(qty="1", price="1000"), lg=lg, book=book) is None
    book.release("earlier")
    assert check(req(qty="1", price="1500", rid="r2"), lg=lg, book=book) is None


def test_insufficient_position() -> None:
    assert check(req("sell", "0.01")) == "insufficient_position"
    lg = ledger("10000", BTC_USD=("0.1", "20000"))
    assert check(req("sell", "0.10000001"), lg=lg) == "insufficient_position"
    assert check(req("sell", "0.1"), lg=lg) is None


def test_insufficient_position_counts_reservations() -> None:
    lg = ledger("10000", BTC_USD=("0.1", "20000"))
    book = RiskBook()
    book.reserve(req("sell", "0.06", rid="earlier"))
    assert book.held_qty("BTC-USD") == D("0.06")
    assert check(req("sell", "0.05"), lg=lg, book=book) == "insufficient_position"
    assert check(req("sell", "0.04"), lg=lg, book=book) is None
    book.release("earlier")
    assert book.held_qty("BTC-USD") == 0
    assert check(req("sell", "0.05", rid="r2"), lg=lg, book=book) is None


# -- exposure --------------------------------------------------------------------------------
def test_max_position_notional() -> None:
    lg = ledger("100000", BTC_USD=("0.25", "20000"))  # 5000 held
    assert check(req(qty="0.05", price="20000"), lg=lg) is None  # 6000: at the limit
    assert check(req(qty="0.0501", price="20000"), lg=lg) == "max_position_notional"
    lg.mark("BTC-USD", D("22000"))  # 5500 held at the mark
    assert check(req(qty="0.03", price="22000", rid="r2"), lg=lg) == "max_position_notional"


def test_max_position_notional_counts_pending_buys() -> None:
    lg = ledger("100000", BTC_USD=("0.2", "20000"))  # 4000 held
    book = RiskBook()
    book.reserve(req(qty="0.05", price="20000", rid="earlier"))  # 1000 pending
    assert book.pending_notional("BTC-USD") == D("1000")
    assert check(req(qty="0.06", price="20000"), lg=lg, book=book) == "max_position_notional"
    assert check(req(qty="0.05", price="20000"), lg=lg, book=book) is None


def test_max_total_exposure() -> None:
    lg = ledger("100000", BTC_USD=("0.25", "20000"), ETH_USD=("2", "1500"))  # 5000 + 3000
    r = req(qty="10", price="150", symbol="SOL-USD")  # 1500 more: 9500 > 9000
    assert check(r, lg=lg) == "max_total_exposure"
    assert check(req(qty="10", price="100", symbol="SOL-USD"), lg=lg) is None  # exactly 9000


def test_max_total_exposure_counts_pending() -> None:
    lg = ledger("100000", BTC_USD=("0.25", "20000"))  # 5000
    book = RiskBook()
    book.reserve(req(qty="2", price="1500", symbol="ETH-USD", rid="e1"))  # 3000 pending
    assert book.pending_notional() == D("3000")
    assert check(req(qty="10", price="150", symbol="SOL-USD"), lg=lg, book=book) == "max_total_exposure"
    book.release("e1")
    assert book.pending_notional() == 0
    assert check(req(qty="10", price="150", symbol="SOL-USD"), lg=lg, book=book) is None


# -- rate ------------------------------------------------------------------------------------
def test_max_orders_per_minute() -> None:
    rules = RiskRules(max_orders_per_minute=3)
    lg = ledger("100000")
    book = RiskBook()
    for i in range(3):
        assert check(req(rid=f"r{i}"), rules=rules, lg=lg, book=book, now=NOW + timedelta(seconds=i)) is None
    assert check(req(rid="r3"), rules=rules, lg=lg, book=book, now=NOW + timedelta(seconds=30)) == (
        "max_orders_per_minute"
    )
    # Rejections do not count: once the first approval is over a minute old, one more passes.
    assert check(req(rid="r4"), rules=rules, lg=lg, book=book, now=NOW + timedelta(seconds=60.5)) is None
    assert check(req(rid="r5"), rules=rules, lg=lg, book=book, now=NOW + timedelta(seconds=60.6)) == (
        "max_orders_per_minute"
    )
    assert check(req(rid="r6"), rules=rules, lg=lg, book=book, now=NOW + timedelta(seconds=200)) is None


def test_rejections_by_other_rules_do_not_use_the_rate() -> None:
    rules = RiskRules(max_orders_per_minute=1)
    book = RiskBook()
    assert check(req(confidence=0.1), rules=rules, book=book) == "min_confidence"
    assert len(book.recent) == 0
    assert check(req(), rules=rules, book=book) is None
    assert len(book.recent) == 1


# -- order of the rules ----------------------------------------------------------------------
def test_first_failing_rule_names_the_rejection() -> None:
    # Fails confidence, window, side, notional and cash at once: confidence comes first.
    rules = RiskRules(trading_window_utc=(time(9), time(10)), blocked_sides=["buy"])
    r = req(qty="1", price="5000", confidence=0.1)
    assert check(r, rules=rules, lg=ledger("10")) == "min_confidence"
    assert check(req(qty="1", price="5000"), rules=rules, lg=ledger("10")) == "trading_window"
    rules = RiskRules(blocked_sides=["buy"])
    assert check(req(qty="1", price="5000"), rules=rules, lg=ledger("10")) == "side_blocked"
    assert check(req(qty="1", price="5000"), lg=ledger("10")) == "max_order_notional"
    assert check(req(qty="1", price="2000"), lg=ledger("10")) == "insufficient_cash"


def test_book_reserve_release() -> None:
    book = RiskBook()
    book.reserve(req("buy", "0.1", "20000", rid="b"))
    book.reserve(req("sell", "2", "1500", symbol="ETH-USD", rid="s"))
    assert book.reserved_cash == D("2000")
    book.reserve(req("buy", "0.1", "20000", rid="b"))  # twice: counted once
    assert book.reserved_cash == D("2000") and set(book.reserved) == {"b", "s"}
    assert book.pending_notional("BTC-USD") == D("2000")
    assert book.pending_notional("ETH-USD") == D("-3000")
    assert book.pending_notional() == D("-1000")
    assert book.held_qty("ETH-USD") == D("2") and book.held_qty("BTC-USD") == 0
    book.release("b")
    book.release("s")
    book.release("never-reserved")
    assert book.reserved == {} and book.reserved_cash == 0
    assert book.pending_notional() == 0 and book.pending_notional("ETH-USD") == 0 and book.held_qty("ETH-USD") == 0


def test_a_partly_filled_order_keeps_only_its_rest_reserved() -> None:
    """Exposure follows the fills: the filled part is in the ledger (a position), so its
    reservation goes; the rest stays reserved until the order ends. Reports are cumulative and
    may repeat: each part counts once."""
    book = RiskBook()
    book.reserve(req("buy", "0.1", "20000", rid="b"))
    book.reserve(req("sell", "2", "1500", symbol="ETH-USD", rid="s"))
    book.fill("b", D("0.04"))
    assert book.reserved_cash == D("1200") and book.pending_notional("BTC-USD") == D("1200")
    book.fill("b", D("0.04"))  # the same report again
    book.fill("b", D("0.03"))  # an older one, late
    assert book.reserved_cash == D("1200")
    book.fill("s", D("0.5"))
    assert book.held_qty("ETH-USD") == D("1.5") and book.pending_notional("ETH-USD") == D("-2250")
    book.fill("b", D("0.1"))  # all of it filled, the final status not in yet: still an open order
    assert book.reserved_cash == 0 and set(book.reserved) == {"b", "s"}
    book.fill("gone", D("1"))  # not (or no longer) reserved: nothing
    book.release("b")
    book.release("s")
    assert book.reserved == {} and book.pending_notional() == 0 and book.held_qty("ETH-USD") == 0
    book.reserve(req("buy", "0.1", "20000", rid="b"))  # a request id reserved anew starts from nothing filled
    book.fill("b", D("0.01"))
    assert book.reserved_cash == D("1800")


def test_exposure_counts_a_partly_filled_order_once() -> None:
    """0.1 BTC approved at 20000 (2000 reserved), 0.05 of it filled (1000 a position in the
    ledger): the exposure is 2000, not the fills plus the whole reservation (3000)."""
    rules = RiskRules(max_total_exposure=D("3000"), max_position_notional=D("10000"))
    book = RiskBook()
    book.reserve(req("buy", "0.1", "20000", rid="first"))
    lg = ledger("10000")
    assert check(req(qty="0.06", rid="second"), rules=rules, lg=lg, book=book) == "max_total_exposure"
    lg.apply(FillRecord("o-first", "BTC-USD", "buy", D("0.05"), D("20000"), D("0"), "t1"))
    book.fill("first", D("0.05"))
    assert check(req(qty="0.045", rid="second"), rules=rules, lg=lg, book=book) is None  # 1000 + 1000 + 900
    assert check(req(qty="0.055", rid="third"), rules=rules, lg=lg, book=book) == "max_total_exposure"
    assert lg.cash - book.reserved_cash == D("8000")  # the cash rule: spent 1000, 1000 still reserved


ops = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "release", "fill"]),
        st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["BTC-USD", "ETH-USD"]),
        st.decimals("0.00000001", "5", places=8),
        st.decimals("1", "90000", places=2),
    ),
    max_size=60,
)


@given(ops)
def test_book_totals_equal_a_recomputation(steps: list) -> None:
    """The running totals are what summing the open reservations gives, after any sequence."""
    book = RiskBook()
    for op, rid, side, symbol, qty, price in steps:
        if op == "reserve":
            book.reserve(Request(rid, symbol, side, qty, price, 1.0))
        elif op == "fill":
            book.fill(rid, qty)  # filled so far (cumulative): what is left of it stays reserved
        else:
            book.release(rid)
    open_ = list(book.reserved.values())
    signed = [(r.symbol, r.qty * r.price * (1 if r.side == "buy" else -1)) for r in open_]
    assert book.reserved_cash == sum((r.qty * r.price for r in open_ if r.side == "buy"), Decimal(0))
    assert book.pending_notional() == sum((n for _, n in signed), Decimal(0))
    for sym in ("BTC-USD", "ETH-USD"):
        assert book.pending_notional(sym) == sum((n for s, n in signed if s == sym), Decimal(0))
        assert book.held_qty(sym) == sum((r.qty for r in open_ if r.side == "sell" and r.symbol == sym), Decimal(0))


# -- live mode: the exchange's minimums, the caps, the held quantity --------------------------
def venue_of(held: str | None = None, **caps: object) -> Venue:
    market = MarketRules("BTC-USD", "BTC", "USD", D("0.0001"), D("0.01"), D("0.0001"), D("10"))
    return Venue(LiveCaps(**caps), market, D(held) if held is not None else None)  # type: ignore[arg-type]  # test kwargs


def live(r: Request, v: Venue, book: RiskBook | None = None, lg: Ledger | None = None) -> str | None:
    return evaluate(r, rules=RiskRules(), halt=OPEN, ledger=lg or ledger(), book=book or RiskBook(), now=NOW, venue=v)


def test_live_minimums_are_refused_before_sending() -> None:
    assert live(req(qty="0.00001"), venue_of()) == "min_amount"
    assert live(req(qty="0.0004"), venue_of()) == "min_notional"  # 8 USD
    assert live(req(qty="0.001"), venue_of()) is None
    assert live(req(), Venue(LiveCaps(), None)) == "unknown_market"


def test_live_caps_name_the_cap() -> None:
    assert live(req(qty="0.06"), venue_of(order_notional=D("1000"))) == "cap_order_notional"
    big_sell = live(req("sell", "0.06"), venue_of(held="1", order_notional=D("1000")))
    assert big_sell is None  # a sell only reduces: a flatten is never stopped by a cap
    book = RiskBook()
    book.add_day("2026-03-14", D("9900"))
    r = Request("r1", "BTC-USD", "buy", D("0.01"), D("20000"), 0.9, day="2026-03-14")
    assert live(r, venue_of(daily_notional=D("10000")), book) == "cap_daily_notional"
    book = RiskBook()
    book.reserve(req(rid="open-1"))
    assert live(req(rid="r2"), venue_of(open_orders=1), book) == "cap_open_orders"


def test_live_positions_are_what_the_exchange_holds() -> None:
    lg = ledger("10000", BTC_USD=("0.1", "20000"))  # the ledger believes 0.1 is held
    assert live(req("sell", "0.05"), venue_of(held="0.01"), lg=lg) == "insufficient_position"
    assert live(req("sell", "0.05"), venue_of(held="0.2"), lg=ledger()) is None
