"""The orchestrator's HTTP server over real sockets (real Redis, PostgreSQL and SQLite): a halt is
answered on the server's own thread once the flag is set — while the agent's event loop is stuck,
over TLS and through a proxy alike — and neither a slow client nor a database that stopped
answering delays any other request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY
from cli_trading.ops.tls import self_signed
from tests.support import ports, postgres

pytestmark = pytest.mark.integration
TOKEN = "server-token-0123456789abcdef"
HALT = b'{"reason": "emergency_stop", "note": "test"}'


@dataclass
class Served:
    orc: Orchestrator
    url: str
    verify: Any = True

    def call(self, results: dict[str, Any], key: str, method: str, path: str, **kw: Any) -> None:
        """From a thread, on a new connection (as curl does): the response and when it came."""
        try:
            with httpx.Client(base_url=self.url, timeout=10, verify=self.verify) as c:
                r = c.request(method, path, **kw)
        except httpx.HTTPError as exc:
            results[key] = (exc, time.monotonic())
            return
        results[key] = (r, time.monotonic())


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, db_url: str, redis_url: str, **settings: Any) -> AsyncIterator[Served]:
    r = aioredis.from_url(redis_url)
    await r.flushdb()
    port = ports.reserve(10)
    o = Orchestrator(
        load_settings(
            data_dir=tmp_path, redis_url=redis_url, database_url=db_url, admin_token=TOKEN, port_base=port, **settings
        )
    )
    task = asyncio.create_task(o.serve())
    scheme = "https" if settings.get("tls_cert_file") else "http"
    served = Served(o, f"{scheme}://127.0.0.1:{port}", verify=scheme != "https")
    async with httpx.AsyncClient(verify=served.verify) as c:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await c.get(f"{served.url}/health")).status_code in (200, 503):
                    break
            await asyncio.sleep(0.05)
    try:
        yield served
    finally:
        o.stop_event.set()
        await asyncio.wait_for(task, 15)
        ports.release(port)
        await r.flushdb()
        await r.aclose()


def _stuck_loop_until(calls: list[threading.Thread], results: dict[str, Any], keys: set[str]) -> float:
    """Block the agent's event loop (this very thread) until the calls named `keys` are answered
    (10 s at most) while all the calls run; returns when the loop resumed."""
    for t in calls:
        t.start()
    deadline = time.monotonic() + 10
    while not keys <= results.keys() and time.monotonic() < deadline:
        time.sleep(0.01)  # deliberately blocking: the orchestrator's loop is this loop
    return time.monotonic()


async def _rows(o: Orchestrator, sql: str) -> list[Any]:
    import sqlalchemy as sa

    async with o.session() as s:
        return list((await s.execute(sa.text(sql))).all())


async def test_halt_is_answered_while_the_event_loop_is_stuck(tmp_path: Path, db_url: str, own_redis_url: str) -> None:
    async with serving(tmp_path, db_url, own_redis_url) as srv:
        r = aioredis.from_url(own_redis_url)
        await r.sadd(INFLIGHT_KEY, "ord-at-the-adapter")
        results: dict[str, Any] = {}
        calls = [
            threading.Thread(
                target=srv.call,
                args=(results, "halt", "POST", "/admin/orchestrate/halt"),
                kwargs={"content": HALT, "headers": {"X-Admin-Token": TOKEN}},
            ),
            threading.Thread(
                target=srv.call,
                args=(results, "no_token", "POST", "/admin/orchestrate/halt"),
                kwargs={"content": b"{}"},
            ),
            threading.Thread(
                target=srv.call,
                args=(results, "bad_body", "POST", "/admin/orchestrate/halt"),
                kwargs={"content": b"{not json", "headers": {"X-Admin-Token": TOKEN}},
            ),
            threading.Thread(target=srv.call, args=(results, "health", "GET", "/health")),
        ]
        resumed = _stuck_loop_until(calls, results, {"halt", "no_token", "bad_body"})
        await asyncio.to_thread(lambda: [t.join(10) for t in calls])

        resp, answered_at = results["halt"]
        assert answered_at < resumed  # answered while the loop could not run
        assert resp.status_code == 200 and resp.headers["x-request-id"]
        body = resp.json()
        assert body["halted"] is True and body["haltReason"] == "emergency_stop"
        assert body["inFlight"] == ["ord-at-the-adapter"]
        assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"
        # refusals are the server's too, with the same JSON errors as ever
        assert results["no_token"][1] < resumed and results["no_token"][0].status_code == 401
        assert results["no_token"][0].json()["error"] == "missing X-Admin-Token header"
        assert results["bad_body"][1] < resumed and results["bad_body"][0].status_code == 400
        # a route of the agent's waits for its loop
        assert results["health"][1] >= resumed and results["health"][0].status_code in (200, 503)

        # the loop records what the server did: halt record, audit rows, access log, metrics
        assert await srv.orc.parts.recorder.written()
        await srv.orc.flush_audit()
        actions = [x.action for x in await _rows(srv.orc, "SELECT action FROM audit_events")]
        assert "admin:POST /admin/orchestrate/halt" in actions and "halt:halt" in actions
        (state,) = await _rows(srv.orc, "SELECT halted, reason FROM halt_state WHERE id = 1")
        assert state.halted and state.reason == "emergency_stop"
        log = (srv.orc.settings.logs_path / "admin-access.log").read_text()
        assert "/admin/orchestrate/halt" in log and TOKEN not in log
        async with httpx.AsyncClient() as c:
            metrics = (await c.get(f"{srv.url}/metrics")).text
        assert 'http_requests_total{method="POST",route="/admin/orchestrate/halt",status="200"}' in metrics
        await r.aclose()


async def test_tls_and_proxied_halts_take_the_same_path(tmp_path: Path, own_redis_url: str) -> None:
    crt, key = self_signed(tmp_path / "server.crt", tmp_path / "server.key", hosts=["localhost", "127.0.0.1"])
    sqlite = f"sqlite:///{tmp_path / 'trading.db'}"
    async with serving(tmp_path, sqlite, own_redis_url, tls_cert_file=str(crt), tls_key_file=str(key)) as srv:
        results: dict[str, Any] = {}
        headers = {"X-Admin-Token": TOKEN, "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        call = threading.Thread(
            target=srv.call,
            args=(results, "halt", "POST", "/admin/orchestrate/halt"),
            kwargs={"content": HALT, "headers": headers},
        )
        resumed = _stuck_loop_until([call], results, {"halt"})
        await asyncio.to_thread(call.join, 10)
        resp, answered_at = results["halt"]
        assert answered_at < resumed, resp  # over TLS, through a proxy (the edge): still the server's
        assert resp.status_code == 200 and resp.json()["haltReason"] == "emergency_stop"
        assert await srv.orc.parts.recorder.written()
        (event,) = await _rows(srv.orc, "SELECT source FROM halt_events")
        assert event.source == "203.0.113.7"  # the client the proxy names (it is a trusted proxy)


async def test_a_slow_client_delays_nobody(tmp_path: Path, own_redis_url: str) -> None:
    async with serving(tmp_path, f"sqlite:///{tmp_path / 'trading.db'}", own_redis_url) as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)))  # connects, never sends
        trickle = socket.create_connection((host, int(port)))
        trickle.sendall(b"POST /admin/orchestrate/halt HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{")
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=5) as c:
                started = time.monotonic()
                health = await c.get("/health")
                halt = await c.post("/admin/orchestrate/halt", content=HALT, headers={"X-Admin-Token": TOKEN})
                elapsed = time.monotonic() - started
        finally:
            silent.close()
            trickle.close()
        assert health.status_code in (200, 503) and halt.status_code == 200
        assert elapsed < 1.0, f"requests waited {elapsed:.2f}s behind the slow clients"


class Blackhole:
    """A TCP forwarder to `target` that can stop passing bytes (a database that stops answering,
    connections left open) and start again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
                self.socks += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # one side closed: tell the other

    def close(self) -> None:
        self.flowing.set()
        for s in [self.listener, *self.socks]:
            with contextlib.suppress(OSError):
                s.close()


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another process's write transaction holding the SQLite file: writers wait."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=1)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_a_database_outage_delays_neither_the_halt_nor_other_requests(
    tmp_path: Path, db_url: str, own_redis_url: str
) -> None:
    hole: Blackhole | None = None
    if db_url.startswith("postgresql"):
        hole = Blackhole(postgres.address(db_url))
        db_url = postgres.via(db_url, "127.0.0.1", hole.port)
    try:
        async with serving(tmp_path, db_url, own_redis_url) as srv:
            outage = contextlib.ExitStack()
            if hole is not None:
                assert hole.socks, "the agent's database connections do not pass through the blackhole"
                hole.flowing.clear()
                outage.callback(hole.flowing.set)
            else:
                outage.enter_context(sqlite_locked(tmp_path / "trading.db"))
            with outage:
                async with httpx.AsyncClient(base_url=srv.url, timeout=5) as c:
                    started = time.monotonic()
                    halt = await c.post("/admin/orchestrate/halt", content=HALT, headers={"X-Admin-Token": TOKEN})
                    pnl = await c.get("/pnl/status")
                    elapsed = time.monotonic() - started
                assert halt.status_code == 200 and pnl.status_code == 200 and pnl.json()["halted"] is True
                assert elapsed < 1.0, f"requests waited {elapsed:.2f}s for the database"
            # back: the record follows
            assert await srv.orc.parts.recorder.written(timeout_s=15)
            (state,) = await _rows(srv.orc, "SELECT halted, reason FROM halt_state WHERE id = 1")
            assert state.halted and state.reason == "emergency_stop"
    finally:
        if hole is not None:
            hole.close()
