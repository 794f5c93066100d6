"""exchange-sim driven by ccxt's own `binance` class over real sockets: markets, balances,
market and limit orders, query by client id, duplicates, trades, auth, partial fills, cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import httpx
import pytest

from tests.support.simexchange import KEY, Sim, start_sim

pytestmark = pytest.mark.integration
SYMBOL = "BTC/USDT"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    # a frozen clock (prices move only when a test moves them) and a thin book (200 USDT per level)
    data = tmp_path_factory.mktemp("sim") / "data"
    proc = start_sim(
        data, "--speed", "0", "--depth", "200", "--balance", "USDT=100000", "--balance", "BTC=1", "--balance", "ETH=10"
    )
    yield proc
    proc.stop()


@pytest.fixture
def ex(sim: Sim) -> ccxt.binance:
    sim.set_price("BTCUSDT", "10000")
    client = sim.client()
    client.load_markets()
    return client


def cid() -> str:
    return "t-" + uuid.uuid4().hex[:16]


def test_load_markets_reads_filters_as_precision_and_limits(ex: ccxt.binance) -> None:
    m = ex.market(SYMBOL)
    assert m["spot"] and m["active"] and m["base"] == "BTC" and m["quote"] == "USDT"
    assert m["precision"]["amount"] == 0.00001 and m["precision"]["price"] == 0.01
    assert m["limits"]["amount"]["min"] == 0.00001 and m["limits"]["cost"]["min"] == 5
    assert "ETH/USDT" in ex.markets


def test_tickers_book_and_candles(ex: ccxt.binance, sim: Sim) -> None:
    t = ex.fetch_ticker(SYMBOL)
    assert t["last"] == 10000 and t["bid"] < 10000 < t["ask"]
    assert set(ex.fetch_tickers([SYMBOL, "ETH/USDT"])) == {SYMBOL, "ETH/USDT"}
    assert ex.fetch_bids_asks([SYMBOL])[SYMBOL]["ask"] == t["ask"]
    book = ex.fetch_order_book(SYMBOL, 5)
    assert len(book["asks"]) == 5 and book["asks"][0][0] == t["ask"]
    candles = ex.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert len(candles) == 5 and all(b[0] - a[0] == 60_000 for a, b in zip(candles, candles[1:], strict=False))
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)
    assert abs(ex.fetch_time() - candles[-1][0]) < 120_000
    sim.admin("POST", "/sim/clock", {"advance_s": 7200})  # two hours of data later the price has moved
    assert ex.fetch_ticker(SYMBOL)["last"] != 10000


def test_market_order_query_duplicate_and_trades(ex: ccxt.binance) -> None:
    before = ex.fetch_balance()
    client_id = cid()
    o = ex.create_order(SYMBOL, "market", "buy", 0.01, params={"newClientOrderId": client_id})
    assert o["status"] == "closed" and o["filled"] == 0.01 and o["clientOrderId"] == client_id
    assert o["fee"]["currency"] == "BTC" and o["fee"]["cost"] == pytest.approx(0.00001)
    assert ex.fetch_order(o["id"], SYMBOL)["status"] == "closed"
    by_client = ex.fetch_order(None, SYMBOL, params={"origClientOrderId": client_id})
    assert by_client["id"] == o["id"] and by_client["filled"] == 0.01
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        ex.create_order(SYMBOL, "market", "buy", 0.01, params={"newClientOrderId": client_id})
    assert sum(1 for x in ex.fetch_orders(SYMBOL) if x["clientOrderId"] == client_id) == 1
    trades = [t for t in ex.fetch_my_trades(SYMBOL) if t["order"] == o["id"]]
    assert sum(t["amount"] for t in trades) == pytest.approx(0.01)
    assert all(t["fee"]["currency"] == "BTC" and t["takerOrMaker"] == "taker" for t in trades)
    after = ex.fetch_balance()
    assert after["BTC"]["total"] == pytest.approx(before["BTC"]["total"] + 0.01 - 0.00001)
    assert after["USDT"]["total"] == pytest.approx(before["USDT"]["total"] - o["cost"])
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYMBOL, params={"origClientOrderId": "never-sent"})


def test_filters_and_funds_refused_with_binances_errors(ex: ccxt.binance) -> None:
    with pytest.raises((ccxt.InvalidOrder, ccxt.BadRequest), match="NOTIONAL"):  # ccxt maps -1013 to BadRequest
        ex.create_order(SYMBOL, "limit", "buy", 0.0001, 9000)  # 0.9 USDT, under the 5 USDT minimum
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(SYMBOL, "market", "sell", 500)
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_order("1", "ETH/BTC")


def test_wrong_secret_or_key_is_an_authentication_error(sim: Sim) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        sim.client(secret="wrong-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        sim.client(key="wrong-key").fetch_balance()
    r = httpx.get(
        f"{sim.url}/api/v3/account", params={"timestamp": "1", "signature": "x"}, headers={"X-MBX-APIKEY": KEY}
    )
    assert r.status_code == 400 and r.json()["code"] == -1021  # a stale timestamp, before the signature


def test_limit_order_fills_when_the_price_crosses(ex: ccxt.binance, sim: Sim) -> None:
    o = ex.create_order(SYMBOL, "limit", "buy", 0.01, 9900, params={"newClientOrderId": cid()})
    assert o["status"] == "open" and o["filled"] == 0
    assert ex.fetch_balance()["USDT"]["used"] >= 99
    sim.set_price("BTCUSDT", "9950")  # not yet
    assert ex.fetch_order(o["id"], SYMBOL)["status"] == "open"
    assert sim.set_price("BTCUSDT", "9890")["fills"] == 1
    done = ex.fetch_order(o["id"], SYMBOL)
    assert done["status"] == "closed" and done["filled"] == 0.01 and done["average"] == 9900
    (trade,) = [t for t in ex.fetch_my_trades(SYMBOL) if t["order"] == o["id"]]
    assert trade["price"] == 9900 and trade["takerOrMaker"] == "maker"


def test_partial_fills_over_price_moves(ex: ccxt.binance, sim: Sim) -> None:
    # 0.05 BTC at 9900 is ~495 USDT; the book gives 200 USDT worth per move
    o = ex.create_order(SYMBOL, "limit", "buy", 0.05, 9900, params={"newClientOrderId": cid()})
    sim.set_price("BTCUSDT", "9800")
    part = ex.fetch_order(o["id"], SYMBOL)
    assert part["status"] == "open" and 0 < part["filled"] < 0.05
    assert part["info"]["status"] == "PARTIALLY_FILLED"
    for _ in range(5):
        if ex.fetch_order(o["id"], SYMBOL)["status"] == "closed":
            break
        sim.set_price("BTCUSDT", "9800")
    done = ex.fetch_order(o["id"], SYMBOL)
    fills = [t for t in ex.fetch_my_trades(SYMBOL) if t["order"] == o["id"]]
    assert done["status"] == "closed" and len(fills) == 3
    assert sum(Decimal(str(t["amount"])) for t in fills) == Decimal("0.05")


def test_each_move_of_a_frozen_clock_fills_one_part_its_depth_chosen(ex: ccxt.binance, sim: Sim) -> None:
    """The clock frozen (--speed 0), nothing fills on its own: each POST /sim/price is one move,
    filling at most its `depth` (the book's --depth when left out) of a resting order."""
    o = ex.create_order(SYMBOL, "limit", "buy", 0.05, 9900, params={"newClientOrderId": cid()})
    first = sim.set_price("BTCUSDT", "9800", depth="98")  # 0.01 BTC at 9800
    assert [(t["orderId"], Decimal(t["qty"])) for t in first["trades"]] == [(int(o["id"]), Decimal("0.01"))]
    assert ex.fetch_order(o["id"], SYMBOL)["filled"] == 0.01  # and nothing more meanwhile
    assert Decimal(sim.set_price("BTCUSDT", "9800", depth="196")["trades"][0]["qty"]) == Decimal("0.02")
    assert ex.fetch_order(o["id"], SYMBOL)["filled"] == 0.03
    last = sim.set_price("BTCUSDT", "9800", depth="100000")  # the rest, not more
    assert Decimal(last["trades"][0]["qty"]) == Decimal("0.02")
    assert ex.fetch_order(o["id"], SYMBOL)["status"] == "closed"
    assert len([t for t in ex.fetch_my_trades(SYMBOL) if t["order"] == o["id"]]) == 3


def test_a_big_market_order_walks_the_book(ex: ccxt.binance) -> None:
    o = ex.create_order(SYMBOL, "market", "buy", 0.05)  # ~500 USDT through 200-USDT levels
    assert o["status"] == "closed" and len(o["trades"]) == 3
    prices = [t["price"] for t in sorted(o["trades"], key=lambda t: int(t["id"]))]  # ccxt orders ids as text
    assert prices == sorted(prices) and prices[0] < prices[-1] and o["average"] > prices[0]


def test_cancel_releases_funds_and_ioc_fok(ex: ccxt.binance) -> None:
    used = ex.fetch_balance()["USDT"]["used"]
    o = ex.create_order(SYMBOL, "limit", "buy", 0.02, 9000, params={"newClientOrderId": cid()})
    assert o["id"] in {x["id"] for x in ex.fetch_open_orders(SYMBOL)}
    assert ex.fetch_balance()["USDT"]["used"] == pytest.approx(used + 180)
    assert ex.cancel_order(o["id"], SYMBOL)["status"] == "canceled"
    assert ex.fetch_balance()["USDT"]["used"] == pytest.approx(used)
    assert o["id"] not in {x["id"] for x in ex.fetch_open_orders(SYMBOL)}
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(o["id"], SYMBOL)
    ioc = ex.create_order(SYMBOL, "limit", "buy", 0.05, 10010, params={"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and 0 < ioc["filled"] < 0.05
    fok = ex.create_order(SYMBOL, "limit", "buy", 0.05, 10010, params={"timeInForce": "FOK"})
    assert fok["status"] == "expired" and fok["filled"] == 0
    by_client = ex.create_order(SYMBOL, "limit", "sell", 0.01, 12000, params={"newClientOrderId": "cancel-me"})
    ex.cancel_order(None, SYMBOL, params={"origClientOrderId": "cancel-me"})
    assert ex.fetch_order(by_client["id"], SYMBOL)["status"] == "canceled"


def test_market_buy_by_cost_and_order_trades(ex: ccxt.binance) -> None:
    o = ex.create_market_buy_order_with_cost(SYMBOL, 100)  # quoteOrderQty: spend 100 USDT
    assert o["status"] == "closed" and 99 < o["cost"] <= 100 and o["info"]["origQuoteOrderQty"] == "100.00000000"
    trades = ex.fetch_order_trades(o["id"], SYMBOL)
    assert sum(t["cost"] for t in trades) == pytest.approx(o["cost"])
    since = trades[0]["timestamp"]
    assert {t["id"] for t in trades} <= {t["id"] for t in ex.fetch_my_trades(SYMBOL, since=since)}
