"""exchange-sim's faults through ccxt (latency, 5xx, 429/418 with Retry-After, the answer lost
after the order was done, rejections) and its state across restarts, kill -9 included."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import ccxt
import httpx
import pytest

from tests.support.simexchange import KEY, Sim, start_sim

pytestmark = pytest.mark.integration
SYMBOL = "BTC/USDT"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    proc = start_sim(tmp_path_factory.mktemp("simf") / "data", "--speed", "0")
    yield proc
    proc.stop()


@pytest.fixture
def ex(sim: Sim) -> Iterator[ccxt.binance]:
    sim.admin("DELETE", "/sim/faults")
    sim.set_price("BTCUSDT", "10000")
    client = sim.client(timeout_ms=1500)
    client.load_markets()
    yield client
    sim.admin("DELETE", "/sim/faults")


def cid() -> str:
    return "f-" + uuid.uuid4().hex[:16]


def test_latency(ex: ccxt.binance, sim: Sim) -> None:
    sim.faults(latency_ms=400)
    start = time.monotonic()
    ex.fetch_balance()
    assert time.monotonic() - start >= 0.4
    sim.admin("DELETE", "/sim/faults")
    start = time.monotonic()
    ex.fetch_balance()
    assert time.monotonic() - start < 0.4


def test_5xx_is_a_ccxt_exception_and_nothing_is_done(ex: ccxt.binance, sim: Sim) -> None:
    sim.faults(error_next=1)
    client_id = cid()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.create_order(SYMBOL, "market", "buy", 0.001, params={"newClientOrderId": client_id})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYMBOL, params={"origClientOrderId": client_id})
    assert sim.admin("GET", "/sim/faults")["injected"]["error"] >= 1


@pytest.mark.parametrize("status", [429, 418])
def test_throttled_with_retry_after(ex: ccxt.binance, sim: Sim, status: int) -> None:
    sim.faults(throttle_next=1, throttle_status=status, retry_after_s=3)
    r = httpx.get(f"{sim.url}/api/v3/ticker/price", params={"symbol": "BTCUSDT"})
    assert r.status_code == status and r.headers["Retry-After"] == "3" and r.json()["code"] == -1003
    sim.faults(throttle_next=1, throttle_status=status)
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_balance()
    assert ex.fetch_balance()["total"]  # the next request goes through


@pytest.mark.parametrize("mode", ["timeout", "drop", "error"])
def test_order_done_but_answer_lost_then_found_by_client_id(ex: ccxt.binance, sim: Sim, mode: str) -> None:
    sim.faults(lose_answer_next=1, lose_answer_mode=mode, lose_answer_hold_s=3)
    client_id = cid()
    expected = {"timeout": ccxt.RequestTimeout, "drop": ccxt.NetworkError, "error": ccxt.RequestTimeout}
    with pytest.raises(expected[mode]):
        ex.create_order(SYMBOL, "market", "buy", 0.001, params={"newClientOrderId": client_id})
    found = ex.fetch_order(None, SYMBOL, params={"origClientOrderId": client_id})
    assert found["status"] == "closed" and found["filled"] == 0.001
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):  # a blind re-send is refused
        ex.create_order(SYMBOL, "market", "buy", 0.001, params={"newClientOrderId": client_id})
    assert [o["clientOrderId"] for o in ex.fetch_orders(SYMBOL)].count(client_id) == 1


def test_rejected_orders(ex: ccxt.binance, sim: Sim) -> None:
    sim.faults(reject_next=1)
    client_id = cid()
    with pytest.raises(ccxt.InvalidOrder, match="-2010"):
        ex.create_order(SYMBOL, "market", "buy", 0.001, params={"newClientOrderId": client_id})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYMBOL, params={"origClientOrderId": client_id})
    assert ex.create_order(SYMBOL, "market", "buy", 0.001)["status"] == "closed"


def test_admin_needs_the_key_and_checks_bodies(sim: Sim) -> None:
    assert httpx.post(f"{sim.url}/sim/faults", json={}).status_code == 401
    bad = httpx.post(f"{sim.url}/sim/faults", json={"error_rate": 2}, headers={"X-MBX-APIKEY": KEY})
    assert bad.status_code == 422
    neg = httpx.post(f"{sim.url}/sim/balance", json={"asset": "BTC", "delta": "-1000"}, headers={"X-MBX-APIKEY": KEY})
    assert neg.status_code == 409


def test_balance_changed_behind_the_back(ex: ccxt.binance, sim: Sim) -> None:
    before = ex.fetch_balance()["BTC"]["free"]
    sim.admin("POST", "/sim/balance", {"asset": "BTC", "delta": "-0.01"})
    assert ex.fetch_balance()["BTC"]["free"] == pytest.approx(before - 0.01)


def test_restart_keeps_orders_trades_balances_and_clock(tmp_path: Path) -> None:
    """Killed with SIGKILL right after its answers, then stopped with SIGTERM: nothing lost."""
    sim = start_sim(tmp_path / "data", "--speed", "0")
    try:
        ex = sim.client()
        ex.load_markets()
        sim.set_price("BTCUSDT", "10000")
        filled = ex.create_order(SYMBOL, "market", "buy", 0.002, params={"newClientOrderId": "keep-1"})
        resting = ex.create_order(SYMBOL, "limit", "buy", 0.002, 9000, params={"newClientOrderId": "keep-2"})
        sim.admin("POST", "/sim/clock", {"advance_s": 3600})
        expected = (ex.fetch_balance()["total"], ex.fetch_ticker(SYMBOL)["last"])
    finally:
        sim.stop(signal.SIGKILL)
    for restart in range(2):
        sim = start_sim(tmp_path / "data", "--balance", "USDT=1", port=sim.port)  # speed: as saved (0)
        try:
            ex = sim.client()
            ex.load_markets()
            assert ex.fetch_order(None, SYMBOL, params={"origClientOrderId": "keep-1"})["status"] == "closed"
            assert [o["id"] for o in ex.fetch_open_orders(SYMBOL)] == [resting["id"]]
            assert [t["order"] for t in ex.fetch_my_trades(SYMBOL)][0] == filled["id"]
            assert (ex.fetch_balance()["total"], ex.fetch_ticker(SYMBOL)["last"]) == expected  # --balance ignored
            with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
                ex.create_order(SYMBOL, "market", "buy", 0.002, params={"newClientOrderId": "keep-1"})
            state = sim.admin("GET", "/sim/state")
            assert state["restored"] is True and state["clock"]["speed"] == 0
            if restart == 0:  # one more order, then a clean stop
                later = ex.create_order(SYMBOL, "market", "buy", 0.002, params={"newClientOrderId": "keep-3"})
                assert int(later["id"]) > int(resting["id"])
                expected = (ex.fetch_balance()["total"], expected[1])
            else:
                assert ex.fetch_order(None, SYMBOL, params={"origClientOrderId": "keep-3"})["status"] == "closed"
        finally:
            sim.stop(signal.SIGTERM)


def test_late_answer_the_order_is_done_before_the_client_hears(ex: ccxt.binance, sim: Sim) -> None:
    sim.faults(answer_delay_ms=2500)
    client_id = cid()
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(SYMBOL, "market", "buy", 0.001, params={"newClientOrderId": client_id})
    sim.admin("DELETE", "/sim/faults")
    assert ex.fetch_order(None, SYMBOL, params={"origClientOrderId": client_id})["status"] == "closed"


def test_cancel_done_but_answer_lost(ex: ccxt.binance, sim: Sim) -> None:
    o = ex.create_order(SYMBOL, "limit", "buy", 0.001, 9000, params={"newClientOrderId": cid()})
    sim.faults(lose_answer_next=1, lose_answer_mode="drop")
    with pytest.raises(ccxt.NetworkError):
        ex.cancel_order(o["id"], SYMBOL)
    assert ex.fetch_order(o["id"], SYMBOL)["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):  # a second cancel: Binance's "Unknown order sent."
        ex.cancel_order(o["id"], SYMBOL)


def test_request_limit_429_then_418(tmp_path: Path) -> None:
    sim = start_sim(tmp_path / "data", "--speed", "0", "--request-limit", "5")  # the start used one
    try:
        url = f"{sim.url}/api/v3/ticker/price"
        codes = [httpx.get(url, params={"symbol": "BTCUSDT"}).status_code for _ in range(10)]
        assert codes[:4] == [200] * 4 and set(codes[4:]) == {429, 418} and codes[-1] == 418
        banned = httpx.get(url)
        assert banned.status_code == 418 and int(banned.headers["Retry-After"]) > 1
        with pytest.raises(ccxt.DDoSProtection):
            sim.client().fetch_time()
        assert httpx.get(f"{sim.url}/sim/state", headers={"X-MBX-APIKEY": KEY}).status_code == 200  # never limited
    finally:
        sim.stop()
