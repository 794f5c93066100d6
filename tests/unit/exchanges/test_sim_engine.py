"""exchange-sim's matching engine: pure, Decimal, no I/O."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.exchanges.sim import engine
from cli_trading.exchanges.sim.engine import Balance, Book, Order
from cli_trading.exchanges.sim.errors import BinanceError
from cli_trading.exchanges.sim.markets import DEFAULT_MARKETS

BTC = DEFAULT_MARKETS[0]
BOOK = Book(spread=D("0.0002"), level_gap=D("0.0005"), depth=D("1000"), fee_rate=D("0.001"))
PRICE = D("10000")


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def order(oid: int, side: str, typ: str, qty: str, price: str = "0", tif: str = "GTC", quote: str = "0") -> Order:
    return Order(oid, f"c{oid}", "BTCUSDT", side, typ, tif, D(qty), D(price), D(quote), 1000 + oid)


def wallet(usdt: str = "100000", btc: str = "10") -> dict[str, Balance]:
    return {"USDT": Balance(D(usdt)), "BTC": Balance(D(btc))}


def test_market_buy_walks_the_levels_and_pays_commission_in_the_base() -> None:
    w = wallet()
    o = order(1, "BUY", "MARKET", "0.25")  # one level holds floor(1000 / ~10001) = 0.09999 BTC
    fills = engine.place(o, BTC, BOOK, PRICE, w, Ids(), 5000)
    assert o.status == "FILLED" and o.executed == D("0.25")
    assert len(fills) == 3 and [f.price for f in fills] == sorted(f.price for f in fills)
    assert fills[0].price == D("10001.00") and fills[1].price > fills[0].price  # best ask, then deeper
    assert all(f.commission_asset == "BTC" and not f.is_maker for f in fills)
    cost = sum(f.price * f.qty for f in fills)
    assert w["USDT"].free == D("100000") - cost
    assert w["BTC"].free == D("10") + D("0.25") - sum(f.commission for f in fills)
    assert o.cum_quote == cost


def test_market_sell_pays_commission_in_the_quote() -> None:
    w = wallet()
    o = order(1, "SELL", "MARKET", "0.05")
    (fill,) = engine.place(o, BTC, BOOK, PRICE, w, Ids(), 5000)
    assert fill.price == D("9999.00") and fill.commission_asset == "USDT"
    assert fill.commission == (fill.price * D("0.05") * D("0.001")).quantize(D("0.00000001"))
    assert w["BTC"].free == D("9.95")
    assert w["USDT"].free == D("100000") + fill.price * D("0.05") - fill.commission


def test_market_buy_by_cost_spends_at_most_the_quote_amount() -> None:
    w = wallet()
    o = order(1, "BUY", "MARKET", "0", quote="500")
    fills = engine.place(o, BTC, BOOK, PRICE, w, Ids(), 5000)
    spent = D("100000") - w["USDT"].free
    assert D("499") < spent <= D("500") and o.qty == o.executed == sum(f.qty for f in fills)


def test_insufficient_funds_refused_and_nothing_changes() -> None:
    w = wallet(usdt="100")
    with pytest.raises(BinanceError) as exc:
        engine.place(order(1, "BUY", "MARKET", "0.02"), BTC, BOOK, PRICE, w, Ids(), 5000)
    assert exc.value.code == -2010 and "insufficient balance" in exc.value.msg
    with pytest.raises(BinanceError):
        engine.place(order(2, "SELL", "LIMIT", "11", "10000"), BTC, BOOK, PRICE, w, Ids(), 5000)
    assert w == wallet(usdt="100")


def test_resting_limit_locks_then_fills_partially_per_move_at_its_price() -> None:
    w, ids = wallet(), Ids()
    o = order(1, "BUY", "LIMIT", "0.25", "9900")
    assert engine.place(o, BTC, BOOK, PRICE, w, ids, 5000) == []
    assert o.status == "NEW" and w["USDT"].locked == D("2475") and w["USDT"].free == D("97525")
    assert engine.match_resting([o], BTC, BOOK, D("9950"), w, ids, 6000) == []  # not crossed
    first = engine.match_resting([o], BTC, BOOK, D("9890"), w, ids, 7000)
    assert [(f.price, f.is_maker) for f in first] == [(D("9900"), True)]
    assert first[0].qty == BTC.floor_qty(BOOK.depth / D("9890")) and o.status == "PARTIALLY_FILLED"
    while o.is_open:
        engine.match_resting([o], BTC, BOOK, D("9890"), w, ids, 8000)
    assert o.status == "FILLED" and o.executed == D("0.25") and o.locked == 0
    assert w["USDT"].locked == 0 and w["USDT"].free == D("100000") - D("2475")
    assert w["BTC"].free == D("10") + D("0.25") - D("0.00025")


def test_a_limit_that_crosses_on_arrival_takes_only_levels_within_its_price() -> None:
    w = wallet()
    o = order(1, "BUY", "LIMIT", "0.5", "10006")  # levels at 10001, 10006.00…; the third is beyond
    fills = engine.place(o, BTC, BOOK, PRICE, w, Ids(), 5000)
    assert len(fills) == 2 and all(f.price <= D("10006") for f in fills) and o.status == "PARTIALLY_FILLED"
    rest = o.qty - o.executed
    assert o.locked == rest * o.price and w["USDT"].locked == o.locked
    # better prices than the limit give the difference back
    assert w["USDT"].free == D("100000") - sum(f.price * f.qty for f in fills) - o.locked


def test_ioc_expires_the_rest_and_fok_fills_all_or_nothing() -> None:
    w = wallet()
    ioc = order(1, "BUY", "LIMIT", "0.5", "10006", tif="IOC")
    assert len(engine.place(ioc, BTC, BOOK, PRICE, w, Ids(), 5000)) == 2
    assert ioc.status == "EXPIRED" and w["USDT"].locked == 0 and ioc.locked == 0
    before = {a: (b.free, b.locked) for a, b in w.items()}
    fok = order(2, "BUY", "LIMIT", "0.5", "10006", tif="FOK")
    assert engine.place(fok, BTC, BOOK, PRICE, w, Ids(), 5000) == []
    assert fok.status == "EXPIRED" and fok.executed == 0
    assert {a: (b.free, b.locked) for a, b in w.items()} == before
    fok_ok = order(3, "BUY", "LIMIT", "0.05", "10006", tif="FOK")
    assert engine.place(fok_ok, BTC, BOOK, PRICE, w, Ids(), 5000) and fok_ok.status == "FILLED"


def test_limit_maker_that_would_take_is_refused() -> None:
    with pytest.raises(BinanceError) as exc:
        engine.place(order(1, "BUY", "LIMIT_MAKER", "0.01", "10010"), BTC, BOOK, PRICE, wallet(), Ids(), 5000)
    assert exc.value.msg == "Order would immediately match and take."


def test_cancel_releases_the_locked_funds() -> None:
    w = wallet()
    o = order(1, "SELL", "LIMIT", "2", "12000")
    engine.place(o, BTC, BOOK, PRICE, w, Ids(), 5000)
    assert w["BTC"] == Balance(D("8"), D("2"))
    engine.cancel(o, BTC, w, 6000)
    assert o.status == "CANCELED" and w["BTC"] == Balance(D("10"), D("0"))


def test_resting_orders_share_the_depth_best_price_first() -> None:
    w, ids = wallet(), Ids()
    low = order(1, "BUY", "LIMIT", "0.08", "9900")
    high = order(2, "BUY", "LIMIT", "0.08", "9950")
    for o in (low, high):
        engine.place(o, BTC, BOOK, PRICE, w, ids, 5000)
    fills = engine.match_resting([low, high], BTC, BOOK, D("9800"), w, ids, 6000)
    budget = BTC.floor_qty(BOOK.depth / D("9800"))
    assert fills[0].order_id == 2 and high.status == "FILLED"
    assert low.executed == budget - D("0.08") and sum(f.qty for f in fills) == budget


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["mb", "ms", "lb", "ls", "cancel", "move"]), st.integers(1, 40), st.integers(-300, 300)
        ),
        max_size=25,
    )
)
def test_wallet_invariants_hold_whatever_happens(ops: list[tuple[str, int, int]]) -> None:
    """Never negative; locked equals what open orders hold; every unit of base and quote is
    accounted for by the fills and their commissions."""
    w, ids, orders, fills = wallet(usdt="5000", btc="0.5"), Ids(), [], []
    for n, (op, size, move) in enumerate(ops):
        price = PRICE + move * 10
        qty = D(size) * D("0.001")
        try:
            if op in ("mb", "ms", "lb", "ls"):
                side = "BUY" if op[1] == "b" else "SELL"
                typ = "MARKET" if op[0] == "m" else "LIMIT"
                o = order(n + 1, side, typ, str(qty), "0" if typ == "MARKET" else str(price))
                fills += engine.place(o, BTC, BOOK, PRICE + move, w, ids, n)
                orders.append(o)
            elif op == "cancel" and any(o.is_open for o in orders):
                engine.cancel(next(o for o in orders if o.is_open), BTC, w, n)
            elif op == "move":
                fills += engine.match_resting(orders, BTC, BOOK, price, w, ids, n)
        except BinanceError:
            pass
        for asset, bal in w.items():
            assert bal.free >= 0 and bal.locked >= 0, asset
        assert w["USDT"].locked == sum(o.locked for o in orders if o.is_open and o.side == "BUY")
        assert w["BTC"].locked == sum(o.locked for o in orders if o.is_open and o.side == "SELL")
    base = sum((f.qty if f.is_buyer else -f.qty) - (f.commission if f.commission_asset == "BTC" else 0) for f in fills)
    quote = sum(
        (-f.quote_qty if f.is_buyer else f.quote_qty) - (f.commission if f.commission_asset == "USDT" else 0)
        for f in fills
    )
    assert w["BTC"].free + w["BTC"].locked == D("0.5") + base
    assert w["USDT"].free + w["USDT"].locked == D("5000") + quote
