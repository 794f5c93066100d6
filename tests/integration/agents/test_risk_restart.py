"""kill -9 of the risk manager with orders in flight, with real processes, Redis and each database
(issue 14): the restarted risk manager rebuilds its reservations from where the approved orders
are (trading/risk_recovery.py), so an order that would breach the exposure limit with them counted
is rejected, and one within it is still approved (the orders in flight counted once); and its rate
window from the approvals of the last minute, so the order rate limit holds across the restart.

The orders are held in flight by running no trade executor: approved, they wait on exec.orders."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from cli_trading.agents.risk import RiskManager
from cli_trading.config import Settings, load_settings
from cli_trading.contracts import (
    ADOPTED_PREFIX,
    BarMsg,
    FillPart,
    Group,
    OrderMsg,
    RiskResponse,
    StatusMsg,
    Stream,
    status_id,
)
from cli_trading.db import exchange_repo, repo, run_repo
from cli_trading.db.models import Order
from cli_trading.exchanges.desk import ledger_row, order_row
from cli_trading.exchanges.ledger_rows import fill_row
from cli_trading.exchanges.orders import Tracked

pytestmark = pytest.mark.integration
TOKEN = "r" * 24
RULES = """risk:
  max_order_notional: 2500
  max_position_notional: 10000
  max_total_exposure: 3000
"""
RATE_RULES = """risk:
  max_orders_per_minute: 2
"""


def in_process(tmp_path: Path, db_url: str, redis_url: str) -> Settings:
    """Settings for a risk manager run in the test's process, with RULES."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "risk.yaml").write_text(RULES)
    return load_settings(data_dir=tmp_path, config_dir=config, redis_url=redis_url, database_url=db_url)


def until(cond: Callable[[], Any], what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.1)


class Agents:
    def __init__(self, tmp: Path, env: dict[str, str], base: int) -> None:
        self.tmp, self.env, self.base = tmp, env, base
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, port_offset: int) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}-{len(self.procs)}.log").open("wb")
        env = {**os.environ, **self.env, "CONSUMER_NAME": f"{name}-1"}  # a restart is the same consumer, as under `up`
        p = subprocess.Popen(
            [sys.executable, "-m", "cli_trading", "agent", name], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        url = f"http://127.0.0.1:{self.base + port_offset}"

        def healthy() -> bool:
            assert p.poll() is None, f"{name} exited: {(self.tmp / log.name).read_text()[-2000:]}"
            try:
                return httpx.get(url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        until(healthy, f"{name} healthy", within=60)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def agents(tmp_path: Path, db_url: str, redis_url: str, port_block: Callable[[int], int]) -> Iterator[Agents]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "risk.yaml").write_text(RULES)
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": db_url,
        "ADMIN_TOKEN": TOKEN,
        "DATA_DIR": str(tmp_path),
        "CONFIG_DIR": str(config),
        "PORT_BASE": str(port_block(10)),
        "SYMBOLS": "BTC-USD",
        "LOG_STDERR": "true",
    }
    a = Agents(tmp_path, env, int(env["PORT_BASE"]))
    try:
        yield a
    finally:
        a.stop()


def consumed(r: redis.Redis, stream: str, entry: bytes, groups: tuple[str, ...]) -> bool:
    info = {g["name"].decode(): g for g in r.xinfo_groups(stream)}
    return all(g in info and info[g]["last-delivered-id"] >= entry and info[g]["pending"] == 0 for g in groups)


def queued_orders(r: redis.Redis) -> list[str]:
    """The request ids of the orders waiting for the (absent) trade executor."""
    return [orjson.loads(f[b"data"])["requestId"] for _, f in r.xrange(Stream.ORDERS)]


class Desk:
    """The orchestrator and the risk manager running (no trade executor: approved orders wait on
    exec.orders), BTC-USD marked at 20000; manual buys sent through the orchestrator."""

    def __init__(self, agents: Agents, redis_url: str) -> None:
        self.agents, self.r = agents, redis.Redis.from_url(redis_url)
        self.orc = httpx.Client(
            base_url=f"http://127.0.0.1:{agents.base}", headers={"X-Admin-Token": TOKEN}, timeout=10
        )
        self.risk_url = f"http://127.0.0.1:{agents.base + 3}"  # 7004 - 7001
        agents.start("orchestrator", 0)
        self.risk = agents.start("risk-manager", 3)
        px = D(20000)
        bar = BarMsg(
            symbol="BTC-USD", barTs=datetime.now(UTC).isoformat(), open=px, high=px, low=px, close=px, volume=1
        )
        entry = self.r.xadd(Stream.BARS, {"data": bar.model_dump_json(exclude_none=True)})
        until(lambda: consumed(self.r, Stream.BARS, entry, (Group.ORCHESTRATOR, Group.RISK)), "the bar marked by both")

    def order(self, qty: str) -> str:
        res = self.orc.post("/orchestrate/run", json={"symbol": "BTC-USD", "side": "buy", "qty": qty})
        assert res.status_code == 202, res.text
        return str(res.json()["requestId"])

    def reservations(self) -> int:
        return int(httpx.get(self.risk_url + "/status", timeout=5).json()["reservations"])

    def kill_and_restart_risk(self) -> None:
        self.risk.send_signal(signal.SIGKILL)
        self.risk.wait(10)
        self.risk = self.agents.start("risk-manager", 3)

    def rejected(self, rid: str, old_answer: str) -> str:
        """The reason risk rejected `rid` for; failing at once if it was approved (`old_answer`:
        why that is what the old code did)."""

        def decided() -> dict[str, Any] | None:
            assert rid not in queued_orders(self.r), f"approved: {old_answer}"
            run: dict[str, Any] = self.orc.get(f"/orchestrate/run/{rid}").json()
            return run if run.get("outcome") else None

        run = until(decided, f"{rid} decided")
        assert run["outcome"] == "rejected", run
        return str(run["reason"])


def test_a_restarted_risk_manager_counts_the_orders_in_flight(agents: Agents, redis_url: str) -> None:
    desk = Desk(agents, redis_url)
    first = desk.order("0.1")  # 2000 of the 3000 allowed
    until(lambda: first in queued_orders(desk.r), "the first order approved, waiting for the executor")
    assert desk.reservations() == 1

    desk.kill_and_restart_risk()
    assert desk.reservations() == 1  # found again

    over = desk.order("0.06")  # 2000 in flight + 1200 > 3000
    assert desk.rejected(over, "the order in flight was not counted") == "max_total_exposure"
    within = desk.order("0.04")  # 2000 + 800: approved, the first order counted once
    until(lambda: within in queued_orders(desk.r), "the order within the limit approved")
    assert queued_orders(desk.r) == [first, within]


def test_a_restarted_risk_manager_keeps_the_order_rate_limit(agents: Agents, redis_url: str) -> None:
    """Two orders approved, two a minute allowed: the running risk manager would reject a third
    within the minute, and so does one restarted after a kill -9 (the old start began with an
    empty window and approved it). Exposure is far from its limits: only the rate decides."""
    (agents.tmp / "config" / "risk.yaml").write_text(RATE_RULES)
    desk = Desk(agents, redis_url)
    first, second = desk.order("0.01"), desk.order("0.01")
    until(lambda: queued_orders(desk.r) == [first, second], "both approved, waiting for the executor")
    approved_at = time.monotonic()

    desk.kill_and_restart_risk()
    # decided well within the approvals' minute (after it, an approval would be right)
    assert time.monotonic() - approved_at < 45, "the restart took most of a minute: nothing to show"
    third = desk.order("0.01")
    assert desk.rejected(third, "the rate window began empty") == "max_orders_per_minute"


async def test_the_reservations_are_found_where_the_approved_orders_are(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    """In process, each place at once: an answer the orchestrator has not taken (approved; a
    rejection and an answer it took are not), an order the executor has not taken, an order the
    executor has, partly filled (the rest reserved), an order settled (not reserved), an order
    adopted from the exchange (a limit buy, reserved at its limit). The rate window: the approvals
    of the last minute — not the adopted order, nor an order settled two minutes ago."""
    s = in_process(tmp_path, db_url, redis_url)
    first = RiskManager(s)
    await first.start()  # the schema
    now = first.clock()
    try:
        runs = [
            {"request_id": rid, "created_at": now, "symbol": "BTC-USD", "manual": True, "side": "buy",
             "qty": D(qty), "price": D(20000), "confidence": 1.0, "order_id": "ord-" + rid}
            for rid, qty in (
                ("answered", "0.01"), ("refused", "0.01"), ("taken", "0.01"), ("partly", "0.1"), ("settled", "0.02")
            )
        ]  # fmt: skip
        partly = OrderMsg(orderId="ord-partly", requestId="partly", symbol="BTC-USD", side="buy", qty=D("0.1"))
        settled = OrderMsg(orderId="ord-settled", requestId="settled", symbol="BTC-USD", side="buy", qty=D("0.02"))
        old = OrderMsg(orderId="ord-old", requestId="old", symbol="BTC-USD", side="buy", qty=D("0.02"))
        adopted = OrderMsg(
            orderId="cid-1", requestId=ADOPTED_PREFIX + "cid-1", symbol="BTC-USD", side="buy", qty=D("0.01"),
            type="limit", price=D(19000),
        )  # fmt: skip
        async with first.session() as sess, sess.begin():
            await run_repo.add_runs(sess, rows=runs)
            claims = [ledger_row(partly, now), ledger_row(settled, now), ledger_row(adopted, now)]
            await repo.claim_orders(sess, rows=[*claims, ledger_row(old, now - timedelta(minutes=2))])
            fill = fill_row(partly, now, trade_id="t-1", qty=D("0.04"), price=D(20000), fee=D(0))
            await repo.insert_fills(sess, fills=[fill])
            final = [{"order_id": "ord-settled", "status": "filled"}, {"order_id": "ord-old", "status": "filled"}]
            await repo.update_many(sess, Order.__table__, "order_id", final)
            await exchange_repo.save_tracked(sess, order=order_row(adopted), tracked=Tracked("cid-1"), now=now)
    finally:
        await first.stop()
    r = first.redis.__class__.from_url(redis_url)
    await r.xgroup_create(Stream.RISK_RESPONSES, Group.ORCHESTRATOR, id="0", mkstream=True)
    for rid, ok in (("taken", True), ("answered", True), ("refused", False), ("settled", True)):
        await r.xadd(Stream.RISK_RESPONSES, {"data": RiskResponse(requestId=rid, ok=ok).model_dump_json()})
        if rid == "taken":  # the orchestrator read it and acknowledged it (its order went on: not reserved here)
            [[_, [(eid, _)]]] = await r.xreadgroup(Group.ORCHESTRATOR, "o", {Stream.RISK_RESPONSES: ">"}, count=1)
            await r.xack(Stream.RISK_RESPONSES, Group.ORCHESTRATOR, eid)
    queued = OrderMsg(
        orderId="ord-queued", requestId="queued", symbol="BTC-USD", side="buy", qty=D("0.05"), price=D(20000)
    )
    await r.xadd(Stream.ORDERS, {"data": queued.model_dump_json()})  # no executor has its group yet: all of it is owed
    await r.aclose()
    agent = RiskManager(s)
    await agent.start()
    try:
        book = agent.parts.book
        assert {rid: r.qty for rid, r in book.reserved.items()} == {
            "answered": D("0.01"), "queued": D("0.05"), "partly": D("0.06"), "adopted-cid-1": D("0.01")
        }  # fmt: skip
        assert book.reserved_cash == D("2590.00")  # (0.01 + 0.05 + 0.06) × 20000 + 0.01 × 19000
        assert agent.parts.ledger.qty_of("BTC-USD") == D("0.04")  # the filled part is a position
        assert len(book.recent) == 4  # answered, settled (on the stream and in orders: once), queued, partly
    finally:
        await agent.stop()


async def test_an_order_adopted_while_running_is_reserved_from_its_announcement(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    """A running risk manager reserves an order adopted from the exchange when the desk announces
    it on exec.status (`pending`, no fills), at its limit, by its `orders` row's amount; its partial
    fill leaves the rest reserved; its end releases it. An announcement of an order settled since
    (delivered late) reserves nothing. Before, an adoption was reserved only from the next start."""
    s = in_process(tmp_path, db_url, redis_url)
    agent = RiskManager(s)
    await agent.start()
    try:
        now, book = agent.clock(), agent.parts.book
        live = OrderMsg(
            orderId="cid-2", requestId=ADOPTED_PREFIX + "cid-2", symbol="BTC-USD", side="buy", qty=D("0.01"),
            type="limit", price=D(19000),
        )  # fmt: skip
        gone = live.model_copy(update={"orderId": "cid-3", "requestId": ADOPTED_PREFIX + "cid-3"})
        async with agent.session() as sess, sess.begin():
            await repo.claim_orders(sess, rows=[ledger_row(live, now), ledger_row(gone, now)])
            for o in (live, gone):
                await exchange_repo.save_tracked(sess, order=order_row(o), tracked=Tracked(o.orderId), now=now)
            await repo.update_many(sess, Order.__table__, "order_id", [{"order_id": "cid-3", "status": "filled"}])

        async def publish(o: OrderMsg, status: str, fills: list[FillPart] | None, qty: str = "0") -> None:
            st = StatusMsg(
                orderId=o.orderId, requestId=o.requestId, status=status, symbol=o.symbol, side=o.side,
                qty=D(qty), price=o.price, fills=fills,
                statusId=status_id(o.orderId, fills if status == "pending" else None),  # final: the order's id
            )  # fmt: skip
            await agent.redis.xadd(Stream.STATUS, {"data": st.model_dump_json()})

        async def reserved(want: dict[str, D]) -> None:
            for _ in range(100):
                if {rid: r.qty for rid, r in book.reserved.items()} == want:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"reserved {book.reserved}, wanted {want}")

        await publish(gone, "pending", [])
        await publish(live, "pending", [])
        await reserved({live.requestId: D("0.01")})
        assert book.reserved_cash == D("190.00")  # at its limit
        part = [FillPart(fillId="t-1", qty=D("0.004"), price=D(19000))]
        await publish(live, "pending", part, qty="0.004")
        await reserved({live.requestId: D("0.006")})
        await publish(live, "filled", part, qty="0.004")  # cancelled after its partial fill, say
        await reserved({})
        assert agent.parts.ledger.qty_of("BTC-USD") == D("0.004")
    finally:
        await agent.stop()
