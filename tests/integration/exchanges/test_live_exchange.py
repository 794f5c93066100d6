"""The ccxt adapter against the exchange simulator, through ccxt's own binance class: precision and
minimums, rejections named clearly, answers lost and resolved by client order id (never sent
twice), partial fills with their fees, cancel, the rate-limit ceiling and 429 back-off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from cli_trading.exchanges.base import OrderRequest
from cli_trading.exchanges.ccxt_adapter import CcxtExchange, create_ccxt
from tests.support.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = start_sim(tmp_path_factory.mktemp("sim"), "--depth", "300", "--speed", "0")
    yield s
    s.stop()


def adapter(sim: Sim, *, secret: str = SECRET, rps: float = 50, window: float = 3) -> CcxtExchange:
    return CcxtExchange(create_ccxt("binance", KEY, secret, url=sim.url, max_rps=rps), resolve_window_s=window,
                        poll_s=0.2)


@pytest.fixture
async def ex(sim: Sim) -> AsyncIterator[CcxtExchange]:
    sim.admin("DELETE", "/sim/faults")
    a = adapter(sim)
    await a.load_markets()
    yield a
    await a.close()


def buy(oid: str, qty: str, **kw: Any) -> OrderRequest:
    return OrderRequest(oid, "BTC-USDT", "buy", D(qty), D("5000"), **kw)


async def orders_with_id(ex: CcxtExchange, oid: str) -> int:
    found = await ex.lookup(oid, "BTC-USDT")
    return 0 if found is None else 1


async def test_markets_precision_and_minimums(ex: CcxtExchange) -> None:
    rules = ex.rules("BTC-USDT")
    assert rules is not None and rules.amount_step == D("0.00001") and rules.min_notional
    r = await ex.submit(buy("ord-t-tiny", "0.0001"))  # ~0.5 USDT: under the minimum notional
    assert r.status == "rejected" and r.reason and r.reason.startswith("min_notional")
    assert await orders_with_id(ex, "ord-t-tiny") == 0  # never sent
    r = await ex.submit(buy("ord-t-prec", "0.0123456789"))
    assert r.status == "filled" and r.tracked is not None
    assert r.tracked.fill_qty == D("0.01234")  # rounded down to the lot step


async def test_a_big_market_order_fills_in_several_trades_with_fees_as_charged(ex: CcxtExchange) -> None:
    r = await ex.submit(buy("ord-t-big", "0.2"))  # ~1000 USDT against 300 per level
    t = r.tracked
    assert r.status == "filled" and t is not None and len(t.fills) >= 3
    assert sum(f.qty for f in t.fills) == t.filled == D("0.2")
    assert {f.fee_currency for f in t.fills} == {"BTC"}  # Binance charges a buy in the base asset
    assert r.fee == sum(f.fee_charged * f.price for f in t.fills)  # converted to USDT at each price
    assert r.price == sum(f.qty * f.price for f in t.fills) / D("0.2")


async def test_a_duplicate_id_is_the_order_already_placed_and_a_bad_signature_a_clear_rejection(
    sim: Sim, ex: CcxtExchange
) -> None:
    first = await ex.submit(buy("ord-t-dup", "0.002"))
    assert first.status == "filled" and first.tracked is not None
    before = sim.state()["orders"]
    # the exchange refuses the id as a duplicate: it has that order (only we make such ids), which
    # is followed, not placed again: the same order, the same trades
    again = await ex.submit(buy("ord-t-dup", "0.002"))
    assert again.status == "filled" and again.tracked is not None, again
    assert again.tracked.exchange_id == first.tracked.exchange_id
    assert [f.trade_id for f in again.tracked.fills] == [f.trade_id for f in first.tracked.fills]
    assert sim.state()["orders"] == before
    # the id taken by an order of another market: not found where we look, a clear rejection
    other = await ex.submit(OrderRequest("ord-t-dup", "ETH-USDT", "buy", D("0.1"), D("200")))
    assert other.status == "rejected" and other.reason and other.reason.startswith("duplicate_client_order_id")
    assert sim.state()["orders"] == before
    bad = adapter(sim, secret="wrong-secret")
    bad.markets = ex.markets
    r = await bad.submit(buy("ord-t-badsig", "0.002"))
    await bad.close()
    assert r.status == "rejected" and r.reason and r.reason.startswith("exchange_auth_failed")
    assert await orders_with_id(ex, "ord-t-badsig") == 0


@pytest.mark.parametrize("mode", ["drop", "error", "timeout"])
async def test_an_order_whose_answer_is_lost_is_found_not_sent_again(sim: Sim, ex: CcxtExchange, mode: str) -> None:
    sim.faults(lose_answer_next=1, lose_answer_mode=mode, lose_answer_hold_s=1.0)
    if mode == "timeout":
        ex.exchange.timeout = 500  # ms: the client gives up before the answer comes
    before = sim.state()["orders"]
    r = await ex.submit(buy(f"ord-t-lost-{mode}", "0.002"))
    assert r.status == "filled", r
    assert sim.state()["orders"] == before + 1  # exactly one order at the exchange


async def test_an_order_refused_before_processing_is_not_at_the_exchange(sim: Sim, ex: CcxtExchange) -> None:
    sim.faults(error_next=1, paths=["/api/v3/order"])
    before = sim.state()["orders"]
    r = await ex.submit(buy("ord-t-5xx", "0.002"))
    # a 503 may or may not have placed it: asked by client order id, the exchange has none
    assert r.status == "rejected" and r.reason == "not_at_exchange"
    assert sim.state()["orders"] == before


async def test_a_limit_order_rests_fills_partially_and_is_cancelled(sim: Sim, ex: CcxtExchange) -> None:
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.99")).quantize(D("0.01"))
    r = await ex.submit(buy("ord-t-limit", "0.2", type="limit", limit_price=limit))
    assert r.status == "pending" and r.tracked is not None and r.tracked.status == "new"
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(limit - D("1"))})  # crosses it once
    t = await ex.follow(r.tracked, "BTC-USDT")
    assert t.status == "partially_filled" and D(0) < t.fill_qty < D("0.2") and t.fills
    cancelled = await ex.cancel("ord-t-limit", "BTC-USDT")
    assert cancelled is not None
    t = await ex.follow(t.update({"status": "canceled", "filled": str(cancelled.filled)}), "BTC-USDT")
    assert t.status == "cancelled" and t.settled() and t.fill_qty == cancelled.filled
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})


async def test_429_storm_backs_off_and_no_request_passes_the_ceiling(sim: Sim) -> None:
    """A storm on every endpoint with Retry-After 0 (ask again at once): only the pacing holds the
    adapter back, and no second at the exchange (as the simulator saw the requests arrive) has
    more than the ceiling."""
    sim.admin("DELETE", "/sim/faults")
    a = adapter(sim, rps=5)
    await a.load_markets()
    started = time.time()
    sim.faults(throttle_for_s=3, retry_after_s=0, paths=["/api/v3/"])
    try:
        results = [await a.submit(buy(f"ord-t-429-{i}", "0.002")) for i in range(3)]
    finally:
        await a.close()
    seen = sim.admin("GET", f"/sim/requests?since={started}")
    assert [r.status for r in results] == ["filled"] * 3
    assert a.backoffs >= 10  # the storm was felt, and asked through at the pace allowed
    assert 3 <= seen["maxPerSecond"] <= 5, seen["maxPerSecond"]
    assert sim.state()["orders"] >= 3


def test_sim_state_is_on_disk(sim: Sim) -> None:
    assert any(Path(sim.data_dir).iterdir())


async def test_a_storm_longer_than_one_request_s_retries_still_fills_once(sim: Sim, ex: CcxtExchange) -> None:
    """Twelve 429s in a row on the order endpoint: the order, then its lookups, are refused more
    often than one request's retries allow; the order still waits the storm out and fills once."""
    sim.faults(throttle_next=12, retry_after_s=0, paths=["/api/v3/order"])
    before, backoffs = sim.state()["orders"], ex.backoffs
    r = await ex.submit(buy("ord-t-storm", "0.002"))
    assert r.status == "filled", r
    assert sim.state()["faults"]["plan"]["throttle_next"] == 0
    assert ex.backoffs - backoffs >= 12
    assert sim.state()["orders"] == before + 1


async def test_a_storm_past_the_budget_is_rejected_rate_limited_with_nothing_placed(sim: Sim, ex: CcxtExchange) -> None:
    sim.faults(throttle_next=1000, retry_after_s=1, paths=["/api/v3/order"])
    ex.give_up_s = 2.5
    before = sim.state()["orders"]
    r = await ex.submit(buy("ord-t-storm-long", "0.002"))
    sim.admin("DELETE", "/sim/faults")
    assert r.status == "rejected" and r.reason and r.reason.startswith("rate_limited"), r
    assert sim.state()["orders"] == before
    assert await orders_with_id(ex, "ord-t-storm-long") == 0
