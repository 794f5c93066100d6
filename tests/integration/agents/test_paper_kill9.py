"""kill -9 of the trade executor in paper mode between the claim of an order and its fill's
commit, with real processes, Redis and PostgreSQL (issue 14's invariant, point 2): the order is
claimed and the paper engine has filled it, its transaction waits on the `fills` table (locked
here), the process is killed; the next executor gets the order again and fills it — one order
row, one fill, one status, and the engine's record shows the order once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from cli_trading.bus import Bus
from cli_trading.contracts import HALT_KEY, OrderMsg, Stream
from cli_trading.halt.state import HaltState

pytestmark = pytest.mark.integration
TOKEN = "k" * 24


def executor(tmp_path: Path, env: dict[str, str], n: int) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"executor-{n}.log").open("wb")
    cmd = [sys.executable, "-m", "cli_trading", "agent", "trade-executor"]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


async def until(cond: Callable[[], Any], what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.1)


async def test_kill_9_between_claim_and_fill_fills_once(
    tmp_path: Path, own_pg_database: str, redis_url: str, port_block: Callable[[int], int]
) -> None:
    base = port_block(10)
    url = f"http://127.0.0.1:{base + 4}"  # the executor's port (7005 - 7001)
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": own_pg_database,
        "ADMIN_TOKEN": TOKEN,
        "DATA_DIR": str(tmp_path),
        "PORT_BASE": str(base),
        "CONSUMER_NAME": "trade-executor@test",  # the restarted process is the same consumer, as under `up`
        "LOG_STDERR": "true",
    }
    r = aioredis.from_url(redis_url)
    await r.hset(HALT_KEY, mapping=HaltState().to_redis())
    first = executor(tmp_path, env, 1)
    second: subprocess.Popen[bytes] | None = None
    db = await asyncpg.connect(own_pg_database, timeout=5)
    locker = await asyncpg.connect(own_pg_database, timeout=5)
    try:

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(url + "/health", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await until(healthy, "the first executor healthy")
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
        bus = Bus(redis_url)
        order = OrderMsg(orderId="ord-k9", requestId="k9", symbol="BTC-USD", side="buy", qty="0.01", price="100")
        await bus.publish(Stream.ORDERS, order)

        async def waiting_on_fills() -> bool:
            q = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO fills%'"  # PostgreSQL's: in a CTE
            )
            return bool(await db.fetchval(q))

        await until(waiting_on_fills, "the executor's transaction: claimed, filled, waiting to write the fill")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await lock.rollback()  # the lock goes; the dead process's transaction can never commit
        second = executor(tmp_path, env, 2)

        async def filled() -> Any:
            return await db.fetch("SELECT order_id FROM fills")

        fills = await until(filled, "the order filled by the next executor")
        assert [f["order_id"] for f in fills] == ["ord-k9"]
        orders = await db.fetch("SELECT order_id, status FROM orders")
        assert [(o["order_id"], o["status"]) for o in orders] == [("ord-k9", "filled")]

        async def status_out() -> Any:
            return [orjson.loads(f[b"data"]) for _, f in await r.xrange(Stream.STATUS)]

        statuses = await until(status_out, "its status published")
        assert [(s["orderId"], s["status"]) for s in statuses] == [("ord-k9", "filled")]
        async with httpx.AsyncClient() as c:
            rec = (await c.get(url + "/admin/exec/adapter", headers={"X-Admin-Token": TOKEN}, timeout=5)).json()
        assert [o["orderId"] for o in rec["orders"]] == ["ord-k9"]
        assert Decimal(str(statuses[0]["qty"])) == Decimal("0.01")
        await bus.close()
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
        await db.close()
        await locker.close()
        await r.aclose()
