"""The halt door on a real orchestrator (HTTP over a real socket, real Redis and PostgreSQL): a
halt is answered while the orchestrator's event loop is stuck, and every other connection the
door accepts meanwhile is served by the loop once it runs again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY
from cli_trading.control.halt_door import parse

pytestmark = pytest.mark.integration
REDIS = "redis://127.0.0.1:6379/10"
PORT_BASE = 18301
URL = f"http://127.0.0.1:{PORT_BASE}"
TOKEN = "door-token-0123456789abcdef"


@pytest.fixture
async def orc(tmp_path: Path, own_pg_database: str) -> AsyncIterator[tuple[Orchestrator, str]]:
    pg_url = own_pg_database
    r = aioredis.from_url(REDIS)
    await r.flushdb()
    o = Orchestrator(
        load_settings(data_dir=tmp_path, redis_url=REDIS, database_url=pg_url, admin_token=TOKEN, port_base=PORT_BASE)
    )
    serving = asyncio.create_task(o.serve())
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                if (await c.get(f"{URL}/health")).status_code in (200, 503):
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    try:
        assert o.door is not None
        yield o, pg_url
    finally:
        o.stop_event.set()
        await asyncio.wait_for(serving, 15)
        await r.flushdb()
        await r.aclose()


def _call(results: dict[str, Any], key: str, method: str, path: str, **kw: Any) -> None:
    """From a thread, on a new connection (as curl does); records the response and when it came."""
    with httpx.Client(base_url=URL, timeout=10) as c:
        r = c.request(method, path, **kw)
    results[key] = (r, time.monotonic())


def _stuck_loop_while(calls: list[threading.Thread], seconds: float) -> float:
    """Block the event loop (this very thread) while the calls run; returns when it resumed."""
    for t in calls:
        t.start()
    time.sleep(seconds)  # deliberately blocking: the orchestrator's loop is this loop
    return time.monotonic()


async def test_halt_is_answered_while_the_event_loop_is_stuck(orc: tuple[Orchestrator, str]) -> None:
    o, pg_url = orc
    r = aioredis.from_url(REDIS)
    await r.sadd(INFLIGHT_KEY, "ord-at-the-adapter")
    results: dict[str, Any] = {}
    halt = threading.Thread(
        target=_call,
        args=(results, "halt", "POST", "/admin/orchestrate/halt"),
        kwargs={"content": b'{"reason": "emergency_stop", "note": "loop stuck"}', "headers": {"X-Admin-Token": TOKEN}},
    )
    resumed = _stuck_loop_while([halt], 1.5)
    halt.join(5)

    resp, answered_at = results["halt"]
    assert answered_at < resumed  # answered while the loop could not run
    assert resp.status_code == 200 and resp.headers["x-request-id"]
    body = resp.json()
    assert body["halted"] is True and body["haltReason"] == "emergency_stop"
    assert body["inFlight"] == ["ord-at-the-adapter"]
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"
    assert o.halts.state.halted and o.halts.state.reason == "emergency_stop"

    await asyncio.sleep(0.5)  # the loop records what the door did: audit row, access log, metrics
    conn = await asyncpg.connect(pg_url)
    try:
        actions = [x["action"] for x in await conn.fetch("SELECT action FROM audit_events")]
        state = await conn.fetchrow("SELECT halted, reason FROM halt_state WHERE id = 1")
    finally:
        await conn.close()
    assert "admin:POST /admin/orchestrate/halt" in actions and "halt:halt" in actions
    assert state["halted"] is True and state["reason"] == "emergency_stop"
    log = (o.settings.logs_path / "admin-access.log").read_text()
    assert "/admin/orchestrate/halt" in log and TOKEN not in log
    async with httpx.AsyncClient() as c:
        metrics = (await c.get(f"{URL}/metrics")).text
    assert 'http_requests_total{method="POST",route="/admin/orchestrate/halt",status="200"} 1.0' in metrics
    await r.aclose()


async def test_what_the_door_does_not_answer_goes_to_the_loop(orc: tuple[Orchestrator, str]) -> None:
    o, _ = orc
    results: dict[str, Any] = {}
    calls = [
        threading.Thread(target=_call, args=(results, "health", "GET", "/health")),
        threading.Thread(
            target=_call, args=(results, "no_token", "POST", "/admin/orchestrate/halt"), kwargs={"content": b"{}"}
        ),
        threading.Thread(
            target=_call,
            args=(results, "bad_body", "POST", "/admin/orchestrate/halt"),
            kwargs={"content": b"{not json", "headers": {"X-Admin-Token": TOKEN}},
        ),
    ]
    resumed = _stuck_loop_while(calls, 1.0)
    await asyncio.to_thread(lambda: [t.join(10) for t in calls])

    for key in ("health", "no_token", "bad_body"):
        assert results[key][1] >= resumed  # served by the loop, once it ran again
    assert results["health"][0].status_code in (200, 503)
    assert results["no_token"][0].status_code == 401
    assert results["no_token"][0].json()["error"] == "missing X-Admin-Token header"
    assert results["bad_body"][0].status_code == 400
    assert not o.halts.state.halted


def test_parse_takes_only_a_complete_halt_request() -> None:
    req = b"POST /admin/orchestrate/halt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Admin-Token: t\r\n\r\n{}"
    parsed = parse(req, "127.0.0.1")
    assert parsed is not None and parsed.body == b"{}" and parsed.size == len(req)
    assert parsed.headers["x-admin-token"] == "t"
    assert parse(req[:-1], "127.0.0.1") is None  # body not all there yet
    assert parse(req.replace(b"POST", b"GET"), "127.0.0.1") is None
    assert parse(req.replace(b"halt", b"unhalt"), "127.0.0.1") is None
    chunked = b"POST /admin/orchestrate/halt HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    assert parse(chunked, "127.0.0.1") is None


async def test_the_door_runs_at_real_time_priority_when_allowed(orc: tuple[Orchestrator, str]) -> None:
    o, _ = orc
    assert o.door is not None
    tid = o.door._thread.native_id
    assert tid is not None
    if os.geteuid() == 0:  # CI runs as root: SCHED_FIFO is allowed, and kept between halts
        assert o.door.priority == "realtime (SCHED_FIFO)"
        async with httpx.AsyncClient(base_url=URL) as c:
            r = await c.post("/admin/orchestrate/halt", headers={"X-Admin-Token": TOKEN}, content=b"{}")
        assert r.status_code == 200
        await asyncio.sleep(0.2)
        assert os.sched_getscheduler(tid) == os.SCHED_FIFO
    else:
        assert o.door.priority == "nice -10" or o.door.priority.startswith("normal")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_if_the_door_thread_ends_the_loop_accepts_instead(orc: tuple[Orchestrator, str]) -> None:
    o, _ = orc
    assert o.door is not None

    def broken(*_: Any) -> None:
        raise SystemExit("simulated: the door's thread dies")

    o.door._serve = broken  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=URL, timeout=5) as c:
        with contextlib.suppress(httpx.TransportError):
            await c.get("/health")  # the connection that ends the thread is lost with it
        await asyncio.sleep(0.3)
        assert not o.door._thread.is_alive()
        r = await c.post("/admin/orchestrate/halt", headers={"X-Admin-Token": TOKEN}, content=b'{"reason":"manual"}')
    assert r.status_code == 200 and r.json()["haltReason"] == "manual"
    assert o.halts.state.halted
