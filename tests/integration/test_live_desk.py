"""The live desk against the exchange simulator (through ccxt's binance class), a real database and
Redis: reconciliation never sees an order between the exchange and the ledger as drift, and a
restart keeps the baseline of the first start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import Database
from tests.integration.simexchange import KEY, SECRET, Sim, start_sim

from cli_trading.contracts import OrderMsg, now_utc
from cli_trading.exchanges import live
from cli_trading.exchanges.base import ExecResult, OrderRequest
from cli_trading.exchanges.ccxt_adapter import CcxtExchange, create_ccxt
from cli_trading.exchanges.desk import Desk
from cli_trading.exchanges.reconcile import Report

pytestmark = pytest.mark.integration


class Calls:
    """What the desk hands back to the executor: settled orders and halt requests."""

    def __init__(self) -> None:
        self.settled: list[tuple[OrderMsg, ExecResult]] = []
        self.halts: list[str] = []

    async def settle(self, m: OrderMsg, r: ExecResult) -> None:
        self.settled.append((m, r))

    async def halt(self, note: str) -> None:
        self.halts.append(note)


async def no_halt() -> None:
    return None


def desk(sim: Sim, db: Database, redis: Any, calls: Calls, *, ccxt_timeout_ms: int = 10_000) -> Desk:
    ex = create_ccxt("binance", KEY, SECRET, url=sim.url, max_rps=50)
    ex.timeout = ccxt_timeout_ms
    return Desk(
        CcxtExchange(ex, resolve_window_s=5, poll_s=0.2),
        sessions=db.sessions,
        redis=redis,
        settle=calls.settle,
        halt=calls.halt,
        halt_state=no_halt,
        clock=now_utc,
        quote="USDT",
        symbols=["BTC-USDT"],
        drift_limit=D("1"),
    )


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    s = start_sim(tmp_path / "sim", "--depth", "300", "--speed", "0", "--balance", "USDT=10000")
    yield s
    s.stop()


def buy(n: int, qty: str = "0.01") -> OrderMsg:
    return OrderMsg.model_validate(
        {"orderId": f"ord-desk-{n}", "requestId": f"desk-{n}", "symbol": "BTC-USDT", "side": "buy", "qty": qty}
    )


async def send(d: Desk, m: OrderMsg) -> list[tuple[OrderMsg, ExecResult]]:
    """What the executor does with a fresh order in live mode."""
    price = D(str((await d.ex.exchange.fetch_ticker("BTC/USDT"))["last"]))
    req = OrderRequest(m.orderId, m.symbol, m.side, m.qty, price)
    return await live.execute(d, lambda: _one(d, m, req))


async def _one(d: Desk, m: OrderMsg, req: OrderRequest) -> list[tuple[OrderMsg, ExecResult]]:
    return [(m, await d.ex.submit(req))]


async def test_an_order_whose_answer_is_held_is_never_drift(sim: Sim, db: Database, redis_client: Any) -> None:
    """The exchange fills the order at once and holds its answer for seconds: reconciliation runs
    meanwhile (as its loop does) and must not see the exchange's new balances without the trade."""
    calls = Calls()
    d = desk(sim, db, redis_client, calls, ccxt_timeout_ms=2_500)
    await d.start()
    try:
        sim.faults(lose_answer_next=1, lose_answer_mode="timeout", lose_answer_hold_s=4, paths=["/api/v3/order"])
        order = asyncio.create_task(send(d, buy(1)))
        reports: list[Report] = []
        while not order.done():
            reports.append(await d.reconcile())
            await asyncio.sleep(0.2)
        [(_, result)] = order.result()
        assert result.status == "filled", result
        assert sim.state()["orders"] == 1
        reports.append(await d.reconcile())
        assert [r.value for r in reports] == [D(0)] * len(reports), [r.to_api() for r in reports if r.value]
        assert calls.halts == []
    finally:
        await d.ex.close()


async def test_a_resting_order_filled_between_two_looks_is_never_drift(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    """A limit order fills at the exchange while nobody is looking: the next reconciliation records
    its trades before it compares."""
    calls = Calls()
    d = desk(sim, db, redis_client, calls)
    await d.start()
    try:
        price = D(sim.state()["prices"]["BTCUSDT"])
        limit = (price * D("0.99")).quantize(D("0.01"))
        m = buy(2, "0.02").model_copy(update={"type": "limit", "price": limit})
        req = OrderRequest(m.orderId, m.symbol, m.side, m.qty, limit, type="limit", limit_price=limit)
        assert await live.execute(d, lambda: _one(d, m, req)) == []  # resting: the desk follows it
        assert m.orderId in d.open
        sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(limit - 50)})  # fills it
        report = await d.reconcile()
        assert report.value == 0, report.to_api()
        assert [x.orderId for x, _ in calls.settled] == [m.orderId] and m.orderId not in d.open
    finally:
        await d.ex.close()


async def test_a_restart_keeps_the_first_baseline(sim: Sim, db: Database, redis_client: Any) -> None:
    """The account held only USDT at the first start (the exchange lists no zero balance); after a
    buy and a restart, the BTC held is explained by the buy, not taken into the baseline."""
    calls = Calls()
    first = desk(sim, db, redis_client, calls)
    await first.start()
    [(_, r)] = await send(first, buy(3))
    assert r.status == "filled"
    await first.ex.close()
    again = desk(sim, db, redis_client, calls)
    await again.start()
    try:
        assert again.report is not None and again.report.value == 0, again.report and again.report.to_api()
    finally:
        await again.ex.close()
