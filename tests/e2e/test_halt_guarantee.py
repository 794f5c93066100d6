"""The halt guarantee: once POST /admin/orchestrate/halt has answered, no new order reaches the
exchange adapter. Hundreds of orders are kept in flight by several concurrent clients, the halt
lands in the middle, and the adapter's own record is checked against the halt's answer. On SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import System, start_system
from tests.support import postgres

pytestmark = pytest.mark.e2e

CLIENTS = 8
ORDERS = 800
MEANINGFUL = 100  # orders at the adapter before the halt


async def _drive(system, halt_after: int) -> tuple[float, dict, list[int]]:
    sent = 0
    codes: list[int] = []
    halted = asyncio.Event()
    answer: dict = {}

    async def client(i: int) -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=system.url(), timeout=30) as c:
            while sent < ORDERS:
                sent += 1
                side = "buy"
                r = await c.post(
                    "/orchestrate/run", json={"symbol": "BTC-USD", "side": side, "notional": 5}, headers=system.admin
                )
                codes.append(r.status_code)

    async def halter() -> None:
        while sent < halt_after:  # noqa: ASYNC110 - polling a counter the clients bump
            await asyncio.sleep(0.001)
        # and enough orders at the adapter for the check to mean something, however slow the
        # machine: the halt lands once the pipeline is full, not after a count of sends
        async with httpx.AsyncClient(base_url=system.url("trade-executor"), timeout=30) as e:
            while len((await e.get("/admin/exec/adapter", headers=system.admin)).json()["orders"]) < MEANINGFUL:  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=system.url(), timeout=30) as c:
            r = await c.post("/admin/orchestrate/halt", headers=system.admin, content=b'{"reason":"emergency_stop"}')
            answer["at"] = time.time()
            answer["body"] = r.json()
            answer["status"] = r.status_code
        halted.set()

    await asyncio.gather(halter(), *[client(i) for i in range(CLIENTS)])
    return answer["at"], answer, codes


@pytest.fixture
def pg_system(tmp_path: Path) -> Iterator[System]:
    """A fresh system on PostgreSQL (a database of its own) and the embedded Redis."""
    with postgres.database("ct_guarantee") as url:
        s = start_system(tmp_path, extra_env={"DATABASE_URL": url})
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_system(request: pytest.FixtureRequest) -> System:
    return request.getfixturevalue("system" if request.param == "sqlite" else "pg_system")


def test_no_order_reaches_the_adapter_after_the_halt_answered(any_system: System) -> None:
    system = any_system
    answered_at, answer, codes = asyncio.run(_drive(system, halt_after=ORDERS // 2))
    assert answer["status"] == 200, answer
    assert answer["body"]["haltReason"] == "emergency_stop"
    in_flight = set(answer["body"]["inFlight"])
    assert codes.count(202) >= 300, f"too few orders accepted before the halt: {codes.count(202)}"
    assert codes.count(409) >= 100, "orders after the halt should be refused at the orchestrator"
    time.sleep(3)  # let everything that was in the pipeline settle
    with system.client("trade-executor") as c:
        record = c.get("/admin/exec/adapter", headers=system.admin).json()["orders"]
    assert len(record) >= MEANINGFUL, "the adapter saw too few orders for the test to mean anything"
    late = [o for o in record if o["at"] > answered_at and o["orderId"] not in in_flight]
    assert late == [], f"{len(late)} order(s) reached the adapter after the halt answered: {late[:3]}"
    # and the risk manager refuses with reason "halted"
    with system.client() as c:
        pnl = c.get("/pnl/status").json()
        assert pnl["halted"] is True and pnl["haltReason"] == "emergency_stop"
