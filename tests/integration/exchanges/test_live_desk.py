"""The live desk against the exchange simulator (through ccxt's binance class), a real database and
Redis: reconciliation never sees an order between the exchange and the ledger as drift, a restart
keeps the baseline of the first start, and an open order the ledger does not know is adopted
(EXCHANGE_UNKNOWN_ORDERS=adopt): recorded, followed, its fills recorded once, no drift."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from cli_trading.contracts import OrderMsg, now_utc
from cli_trading.db import exchange_repo, repo
from cli_trading.exchanges import live
from cli_trading.exchanges.base import ExecResult, OrderRequest
from cli_trading.exchanges.ccxt_adapter import CcxtExchange, create_ccxt
from cli_trading.exchanges.desk import Desk, ledger_row
from cli_trading.exchanges.ledger_rows import fill_rows_of, trade_row
from cli_trading.exchanges.markets import client_order_id
from cli_trading.exchanges.orders import Fill, Tracked
from cli_trading.exchanges.reconcile import Report, UnknownPolicy
from cli_trading.halt.state import HaltState
from tests.integration.conftest import Database
from tests.support.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.integration


class Calls:
    """What the desk hands back to the executor: settled orders, partial fills and halt requests.
    With a database, the ledger's fill rows are written as the executor writes them."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db
        self.settled: list[tuple[OrderMsg, ExecResult]] = []
        self.partials: list[tuple[str, list[str]]] = []  # (order id, trade ids) per call
        self.halts: list[str] = []

    async def settle(self, m: OrderMsg, r: ExecResult) -> None:
        self.settled.append((m, r))
        if self.db is not None:
            async with self.db.sessions() as s, s.begin():
                await repo.insert_fills(s, fills=fill_rows_of(m, r, now_utc()) if r.status == "filled" else [])

    async def partial(self, m: OrderMsg, t: Tracked, new: Sequence[Fill]) -> None:
        self.partials.append((m.orderId, [f.trade_id for f in new]))
        if self.db is not None:
            async with self.db.sessions() as s, s.begin():
                await repo.insert_fills(s, fills=[trade_row(m, f, now_utc()) for f in new])

    async def halt(self, note: str) -> None:
        self.halts.append(note)


async def no_halt() -> None:
    return None


def desk(
    sim: Sim,
    db: Database,
    redis: Any,
    calls: Calls,
    *,
    ccxt_timeout_ms: int = 10_000,
    unknown_orders: UnknownPolicy = "cancel",
    halt_state: Any = no_halt,
) -> Desk:
    ex = create_ccxt("binance", KEY, SECRET, url=sim.url, max_rps=50)
    ex.timeout = ccxt_timeout_ms
    return Desk(
        CcxtExchange(ex, resolve_window_s=5, poll_s=0.2),
        sessions=db.sessions,
        redis=redis,
        settle=calls.settle,
        partial=calls.partial,
        halt=calls.halt,
        halt_state=halt_state,
        clock=now_utc,
        quote="USDT",
        symbols=["BTC-USDT"],
        drift_limit=D("1"),
        unknown_orders=unknown_orders,
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
    return [(m, await live.submit(d, m, lambda: d.ex.submit(req)))]


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


async def ledger_fills(db: Database, oid: str) -> list[tuple[str, D]]:
    async with db.sessions() as s:
        return [(f.fill_id, f.qty) for f in await repo.all_fills(s) if f.order_id == oid]


async def test_each_partial_fill_is_a_fill_row_at_once_and_a_restart_records_none_twice(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    """A resting limit order filled in parts: each trade is a fill row (and handed to the executor
    to publish) as soon as the desk sees it, before the order is final; a new desk (a restart)
    records the same trades again without a second row; the cancel that ends it adds none."""
    calls = Calls(db)
    d = desk(sim, db, redis_client, calls)
    await d.start()
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.99")).quantize(D("0.01"))
    m, req = limit_order(30, "buy", "0.2", limit)
    async with db.sessions() as s, s.begin():  # claimed, as the executor does before sending
        await repo.claim_orders(s, rows=[ledger_row(m, now_utc())])
    try:
        assert await live.execute(d, lambda: _one(d, m, req)) == []  # resting
        seen: list[list[tuple[str, D]]] = []
        for _ in range(2):
            cross(sim, limit)
            await d.tick(None)
            seen.append(await ledger_fills(db, m.orderId))
        assert m.orderId in d.open and calls.settled == []  # not final yet
        first, second = seen
        assert 1 <= len(first) < len(second), seen  # a row per trade, as each price move fills a part
        trades = await sim_trades(d, m.orderId)
        assert sorted(t for t, _ in second) == sorted(trades) and sum(q for _, q in second) < D("0.2")
        assert [tid for _, tids in calls.partials for tid in tids] == [t for t, _ in second]  # each once
    finally:
        await d.ex.close()
    later = Calls(db)
    again = desk(sim, db, redis_client, later)
    await again.start()  # resolves the pending order by client order id: its trades recorded again
    try:
        assert m.orderId in again.open and later.partials == [(m.orderId, [t for t, _ in second])]
        assert await ledger_fills(db, m.orderId) == second  # no second row
        await again.tick(HaltState(halted=True, mode="halt"))  # cancelled: final, partly filled
        [(_, r)] = [(x, r) for x, r in later.settled if x.orderId == m.orderId]
        assert r.status == "filled" and (r.reason or "").startswith("cancelled after a partial fill"), r
        assert await ledger_fills(db, m.orderId) == second
        assert (await again.reconcile()).value == 0
    finally:
        await again.ex.close()
        sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})


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


async def test_a_redelivered_order_left_pending_is_looked_up_never_reported_failed(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    """The batch that claimed two orders failed (one had reached the exchange, one had not): their
    ledger rows stay `pending`. On redelivery the desk follows them by client order id, never
    sending: the one at the exchange settles filled, the other `not_at_exchange` once the resolve
    window is over. An order final in the ledger is handed back (its status published again)."""
    calls = Calls()
    d = desk(sim, db, redis_client, calls)
    await d.start()
    try:
        sent, never, done = buy(20), buy(21), buy(22)
        async with db.sessions() as s, s.begin():
            await repo.claim_orders(s, rows=[ledger_row(m, now_utc()) for m in (sent, never, done)])
            await repo.settle_orders(s, orders=[{"order_id": done.orderId, "status": "rejected"}], fills=[])
        cid = {"newClientOrderId": client_order_id(sent.orderId)}
        await d.ex.exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, cid)
        assert await d.take_pending([sent, never, done]) == [done]
        assert set(d.open) == {sent.orderId, never.orderId}
        deadline = asyncio.get_running_loop().time() + 30
        while d.open and asyncio.get_running_loop().time() < deadline:
            await d.tick(None)
            await asyncio.sleep(0.3)
        settled = {m.orderId: r for m, r in calls.settled}
        assert settled[sent.orderId].status == "filled", settled
        assert (settled[never.orderId].status, settled[never.orderId].reason) == ("rejected", "not_at_exchange")
        assert sim.state()["orders"] == 1  # nothing sent
    finally:
        await d.ex.close()


def limit_order(n: int, side: str, qty: str, price: D) -> tuple[OrderMsg, OrderRequest]:
    m = buy(n, qty).model_copy(update={"side": side, "type": "limit", "price": price})
    return m, OrderRequest(m.orderId, m.symbol, side, m.qty, price, type="limit", limit_price=price)


async def test_a_halt_cancels_resting_orders_and_reduce_only_keeps_a_reducing_sell(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    calls = Calls()
    d = desk(sim, db, redis_client, calls)
    await d.start()
    try:
        [(_, r)] = await send(d, buy(4))
        assert r.status == "filled" and d.held("BTC-USDT") > D("0.005")
        price = D(sim.state()["prices"]["BTCUSDT"])
        sell = limit_order(5, "sell", "0.005", (price * D("1.05")).quantize(D("0.01")))
        more = limit_order(6, "buy", "0.005", (price * D("0.95")).quantize(D("0.01")))
        for m, req in (sell, more):
            assert await live.execute(d, lambda m=m, req=req: _one(d, m, req)) == []  # both resting
        await d.tick(HaltState(halted=True, mode="reduce_only"))
        open_ids = {str(o["clientOrderId"]) for o in await d.ex.exchange.fetch_open_orders("BTC/USDT")}
        assert open_ids == {sell[0].orderId} and set(d.open) == {sell[0].orderId}  # the buy is cancelled
        await d.tick(HaltState(halted=True, mode="halt"))
        assert await d.ex.exchange.fetch_open_orders("BTC/USDT") == [] and d.open == {}
        settled = {m.orderId: res for m, res in calls.settled}
        assert [settled[m.orderId].reason for m, _ in (sell, more)] == ["cancelled at the exchange"] * 2
        assert (await d.reconcile()).value == 0
    finally:
        await d.ex.close()


async def test_an_order_waiting_out_a_429_storm_holds_up_neither_a_halts_cancels_nor_reconciliation(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    """New orders refused with 429 (Retry-After 3 s) while a limit order rests: the refused order
    waits outside the desk's books, so a halt's cancel and a reconciliation go through at once,
    not after its wait (up to the give-up time); after the wait, the halt stops it from being
    sent again (`rejected`, reason `halted`), nothing of it at the exchange."""
    calls = Calls()
    state: list[HaltState | None] = [None]

    async def halt_state() -> HaltState | None:
        return state[0]

    d = desk(sim, db, redis_client, calls, halt_state=halt_state)
    await d.start()
    try:
        price = D(sim.state()["prices"]["BTCUSDT"])
        m, req = limit_order(7, "buy", "0.005", (price * D("0.95")).quantize(D("0.01")))
        assert await live.execute(d, lambda: _one(d, m, req)) == []  # resting
        refused = sim.state()["faults"]["injected"]["throttle"]
        orders = sim.state()["orders"]
        sim.faults(throttle_for_s=60, retry_after_s=3, paths=["/api/v3/order"], methods=["POST"])
        waiting = asyncio.create_task(send(d, buy(8)))
        while sim.state()["faults"]["injected"]["throttle"] == refused:  # until it is refused
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.05)
        state[0] = HaltState(halted=True, mode="halt")
        await asyncio.wait_for(d.tick(state[0]), 2.5)  # not behind the waiting order
        assert await d.ex.exchange.fetch_open_orders("BTC/USDT") == [] and m.orderId not in d.open
        assert (await asyncio.wait_for(d.reconcile(), 2.5)).value == 0
        assert not waiting.done()
        [(_, r)] = await asyncio.wait_for(waiting, 10)
        assert (r.status, r.reason) == ("rejected", "halted"), r
        assert sim.state()["orders"] == orders  # the waiting order never reached the exchange
    finally:
        sim.admin("DELETE", "/sim/faults")
        await d.ex.close()


# -- open orders the ledger does not know, adopted -------------------------------------------------
def cross(sim: Sim, limit: D) -> None:
    """One price move through a resting buy at `limit`: the book fills it up to its depth."""
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(limit - 50)})


async def by_hand(d: Desk, qty: str, limit: D) -> str:
    """A limit buy placed at the exchange by someone else (no client order id: the exchange's own)."""
    o = await d.ex.exchange.create_order("BTC/USDT", "limit", "buy", float(qty), float(limit))
    return str(o["clientOrderId"])


async def ledger_of(db: Database, oid: str) -> tuple[Any, str | None, list[str]]:
    """The ledger's order (its final status and fill are the executor's `settle`), the order's
    status as the exchange rows have it, and its trades recorded."""
    async with db.sessions() as s:
        [order] = await repo.get_orders(s, order_ids=[oid])
        status = next((o.status for o in await exchange_repo.open_orders(s) if o.order_id == oid), None)
        trades = [t.trade_id for t in await exchange_repo.fills(s) if t.order_id == oid]
    return order, status, trades


async def sim_trades(d: Desk, cid: str) -> list[str]:
    o = await d.ex.exchange.fetch_order("", "BTC/USDT", {"clientOrderId": cid})
    return [str(t["id"]) for t in await d.ex.exchange.fetch_my_trades("BTC/USDT") if t["order"] == o["id"]]


async def fill_up(d: Desk, sim: Sim, calls: Calls, cid: str, limit: D) -> list[Report]:
    """Price moves through the order until the desk has settled it, the tick and reconciliation
    running between them as their loops do."""
    reports = []
    for _ in range(20):
        if any(m.orderId == cid for m, _ in calls.settled):
            break
        cross(sim, limit)
        await d.tick(None)
        reports.append(await d.reconcile())
    return reports


async def test_an_unknown_resting_order_is_adopted_followed_and_its_fills_recorded_once(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    calls = Calls()
    d = desk(sim, db, redis_client, calls, unknown_orders="adopt")
    await d.start()
    try:
        price = D(sim.state()["prices"]["BTCUSDT"])
        limit = (price * D("0.99")).quantize(D("0.01"))
        qty = (D(600) / limit).quantize(D("0.00001"))  # two to three price moves of a 300-deep book
        cid = await by_hand(d, str(qty), limit)
        report = await d.reconcile()
        assert (report.adopted_orders, report.unknown_orders, report.value) == ([cid], [], D(0)), report.to_api()
        assert cid in d.open
        assert cid in {str(o["clientOrderId"]) for o in await d.ex.exchange.fetch_open_orders("BTC/USDT")}
        order, status, trades = await ledger_of(db, cid)
        assert (order.status, order.request_id, order.side, order.qty) == ("pending", f"adopted-{cid}", "buy", qty)
        assert (status, trades) == ("new", [])
        again = await d.reconcile()  # ours now: neither adopted again nor unknown
        assert (again.adopted_orders, again.unknown_orders) == ([], []), again.to_api()

        reports = await fill_up(d, sim, calls, cid, limit)
        assert [r.value for r in reports] == [D(0)] * len(reports), [r.to_api() for r in reports if r.value]
        [(m, result)] = [(m, r) for m, r in calls.settled if m.orderId == cid]
        assert (result.status, m.requestId) == ("filled", f"adopted-{cid}"), result
        assert result.tracked is not None and result.tracked.fill_qty == qty
        for _ in range(2):  # more looks change nothing: one settlement, each trade once
            await d.tick(None)
            assert (await d.reconcile()).value == 0
        _, status, trades = await ledger_of(db, cid)
        exchange_trades = await sim_trades(d, cid)
        assert len(exchange_trades) >= 2 and sorted(trades) == sorted(exchange_trades)
        assert status is None  # final: no longer among the open orders
        assert [m.orderId for m, _ in calls.settled] == [cid] and calls.halts == []
    finally:
        await d.ex.close()


async def test_an_adopted_order_is_followed_after_a_restart(sim: Sim, db: Database, redis_client: Any) -> None:
    calls = Calls()
    first = desk(sim, db, redis_client, calls, unknown_orders="adopt")
    await first.start()
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.99")).quantize(D("0.01"))
    cid = await by_hand(first, "0.003", limit)
    assert (await first.reconcile()).adopted_orders == [cid]
    await first.ex.close()
    again = desk(sim, db, redis_client, calls, unknown_orders="adopt")
    await again.start()
    try:
        assert cid in again.open  # a pending order of the ledger, resolved at start like ours
        assert again.report is not None and (again.report.adopted_orders, again.report.unknown_orders) == ([], [])
        reports = await fill_up(again, sim, calls, cid, limit)
        assert [r.value for r in reports] == [D(0)] * len(reports), [r.to_api() for r in reports if r.value]
        assert [m.orderId for m, _ in calls.settled] == [cid] and calls.halts == []
    finally:
        await again.ex.close()


async def test_an_order_partly_filled_before_the_first_start_is_adopted_without_counting_twice(
    sim: Sim, db: Database, redis_client: Any
) -> None:
    """The order's first trade is in the balances the baseline is taken from: the baseline is
    taken without it, so that the ledger, which now records the whole order, explains the account."""
    calls = Calls()
    d = desk(sim, db, redis_client, calls, unknown_orders="adopt")
    try:
        price = D(sim.state()["prices"]["BTCUSDT"])
        limit = (price * D("0.99")).quantize(D("0.01"))
        qty = (D(600) / limit).quantize(D("0.00001"))
        cid = await by_hand(d, str(qty), limit)
        cross(sim, limit)
        [before] = await sim_trades(d, cid)
        await d.start()
        assert d.report is not None and d.report.adopted_orders == [cid], d.report and d.report.to_api()
        assert d.report.value == 0, d.report.to_api()
        _, _, trades = await ledger_of(db, cid)
        assert trades == [before]
        async with db.sessions() as s:
            baseline = await exchange_repo.baseline(s)
        assert baseline.get("BTC", D(0)) == 0  # bought by the adopted order, not held before it
        assert (await d.reconcile()).value == 0
        reports = await fill_up(d, sim, calls, cid, limit)
        assert [r.value for r in reports] == [D(0)] * len(reports), [r.to_api() for r in reports if r.value]
        [(_, result)] = [(m, r) for m, r in calls.settled if m.orderId == cid]
        assert result.status == "filled" and result.tracked is not None and result.tracked.fill_qty == qty
        assert calls.halts == []
    finally:
        await d.ex.close()


async def test_markets_are_refreshed_from_the_exchange(sim: Sim, db: Database, redis_client: Any) -> None:
    """The periodic refresh (EXCHANGE_MARKETS_REFRESH_S) asks the exchange again, not ccxt's cache,
    and republishes the rules the risk manager reads."""
    import orjson

    from cli_trading.exchanges.keys import MARKETS_KEY

    d = desk(sim, db, redis_client, Calls())
    fetched: list[int] = []
    real = d.ex.exchange.fetch_markets

    async def counting(*args: Any, **kwargs: Any) -> Any:
        fetched.append(1)
        return await real(*args, **kwargs)

    d.ex.exchange.fetch_markets = counting
    try:
        await d.refresh_markets()
        await redis_client.delete(MARKETS_KEY)
        await d.refresh_markets()
        assert len(fetched) == 2  # the second reloaded from the exchange
        assert "BTC-USDT" in orjson.loads(await redis_client.get(MARKETS_KEY))
    finally:
        await d.ex.close()
