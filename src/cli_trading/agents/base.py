"""The agent component: one fixed lifecycle (connect, migrate, start consumers and loops, serve
HTTP, stop on SIGTERM within seconds) that every agent shares. Agents supply hooks: their parts
(`wire`, from the settings and the services, agents/wiring.py), how those start (`on_start`), what
they consume, their routes, their loops, their status. No agent overrides `start`/`stop`/`serve`.

What the lifecycle uses lives beside it: the HTTP server (`server.py`), the audit events and the
admin access log (`audit.py`), health, host metrics and process status (`health.py`), the
process itself (`process.py`). Here: the lifecycle, and the services it hands to the agent (the
bus, database sessions, notifications, the admin guard's spike alert, calls onto its loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cli_trading.agents import health
from cli_trading.agents.audit import Auditor
from cli_trading.agents.server import OnLoop, agent_server
from cli_trading.agents.wiring import Services
from cli_trading.auth import Lockout, TokenStore, parse_allow_list
from cli_trading.bus import REDIS_DOWN, BatchHandler, Bus, Consumer
from cli_trading.config import Settings, read_secret_file, redact_url
from cli_trading.contracts import NotifyEvent, Stream, now_utc
from cli_trading.db import engine as dbengine
from cli_trading.db.pgraw import Held
from cli_trading.logs import get_logger

Clock = Callable[[], datetime]
T = TypeVar("T")
P = TypeVar("P")  # an agent's parts (its wiring function's frozen dataclass)


class StartupError(RuntimeError):
    """A dependency is missing at start: the message names it and how to fix it."""


@dataclass
class Subscription:
    stream: str
    group: str
    handler: BatchHandler
    key: str | None = None  # the payload's field that names a message for good (idempotency)
    batch: int = 200


@dataclass
class AdminGuard:
    tokens: TokenStore
    lockout: Lockout
    allow: list[Any] = field(default_factory=list)
    last_spike_alert: float = 0.0


class Agent(Generic[P]):
    name: ClassVar[str]
    uses_db: ClassVar[bool] = True
    # buffered rows (audit, runs) are written this often: one transaction per interval, however
    # many decisions it holds. Longer means cheaper under load, but a later row in the database.
    write_interval_s: ClassVar[float] = 0.1

    def __init__(self, settings: Settings, *, clock: Clock = now_utc, consumer_name: str | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.consumer_name = consumer_name or os.environ.get("CONSUMER_NAME") or f"{self.name}@{socket.gethostname()}"
        self.log = get_logger(self.name)
        self.bus: Bus | None = None
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.consumers: list[Consumer] = []
        self.stop_event = asyncio.Event()
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self.auditor = Auditor(
            self.name,
            clock=clock,
            log=self.log,
            uses_db=self.uses_db,
            access_log=settings.logs_path / "admin-access.log",
        )
        self._loop: asyncio.AbstractEventLoop | None = None  # set in start(): the HTTP server's thread calls in
        token = settings.admin_token or None
        self.guard = AdminGuard(
            TokenStore(token=token, token_file=settings.admin_token_file),
            Lockout(settings.auth_fail_limit, settings.auth_fail_window_s, settings.auth_lockout_s),
            parse_allow_list(settings.admin_allow_cidrs),
        )

    _parts: P | None = None  # made at start by the `wire` hook

    # -- hooks -----------------------------------------------------------------------------
    async def wire(self, services: Services) -> P:
        """Build the agent's parts from the settings and its services (its wiring function)."""
        raise NotImplementedError

    def subscriptions(self) -> list[Subscription]:
        return []

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        """Coroutines that run until stop (each must watch `self.stop_event`)."""
        return []

    def add_routes(self, app: FastAPI) -> None:
        pass

    async def on_start(self) -> None:
        """Start the parts `wire` made (restore, warm up) before any consumer or loop runs."""

    async def on_stop(self) -> None:
        pass

    async def status(self) -> dict[str, Any]:
        return {}

    def refresh_metrics(self) -> None:
        pass

    # -- shared services -------------------------------------------------------------------
    @property
    def parts(self) -> P:
        """What `wire` built; an error before the start."""
        if self._parts is None:
            raise RuntimeError(f"{self.name}: its parts used before the agent started")
        return self._parts

    def services(self) -> Services:
        return Services(
            settings=self.settings,
            name=self.name,
            sessions=self.session,
            redis=self.redis,
            clock=self.clock,
            audit=self.audit,
            notify=self.notify,
            publish=self.streams.publish,
            log=self.log,
        )

    @property
    def streams(self) -> Bus:
        if self.bus is None:
            raise RuntimeError(f"{self.name}: the bus used before the agent started")
        return self.bus

    @property
    def redis(self) -> Any:
        if self.bus is None:
            raise RuntimeError(f"{self.name}: Redis used before the agent started")
        return self.bus.redis

    def session(self) -> AsyncSession:
        if self.sessions is None:
            raise RuntimeError(f"{self.name}: the database used before the agent started")
        return self.sessions()

    async def db_up(self) -> bool:
        """Whether the database answers now (an agent without one: never)."""
        return self.engine is not None and await dbengine.check(self.engine)

    def audit(self, action: str, **fields: Any) -> None:
        """Queue an audit event, from any thread (agents/audit.py)."""
        self.auditor.add(action, **fields)

    async def flush_audit(self) -> None:
        """Write the buffered audit events now."""
        await self.auditor.flush(self.sessions)

    async def notify(self, type_: str, severity: str, message: str, **context: Any) -> None:
        if self.bus is None:
            raise RuntimeError(f"{self.name}: notification before the agent started")
        try:
            await self.bus.publish(
                Stream.NOTIFY,
                NotifyEvent(type=type_, severity=severity, message=message, context={"agent": self.name, **context}),
            )
        except REDIS_DOWN as exc:
            self.log.error("could not publish notification", type=type_, error=str(exc))

    def audit_admin(
        self, method: str, route: str, *, actor: str | None, addr: str, status: int, request_id: str
    ) -> None:
        self.auditor.admin(method, route, actor=actor, addr=addr, status=status, request_id=request_id)

    def auth_failed(self, addr: str, *, recent: int) -> None:
        """From the HTTP server: an admin authentication failed (`recent` in the last minute)."""
        self.call_soon(self._auth_failures, addr, recent)

    async def _auth_failures(self, addr: str, recent: int) -> None:
        """A spike of failed authentications raises a security event (at most once a minute)."""
        now = time.monotonic()
        if recent < self.settings.auth_spike_threshold or now - self.guard.last_spike_alert < 60:
            return
        self.guard.last_spike_alert = now
        await self.notify(
            "security.auth_failures",
            "critical",
            f"{recent} failed admin authentications in the last minute on {self.name}",
            source=addr,
            failures=recent,
            category="security",
        )
        await self.on_auth_spike(addr)

    def call_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run `fn(*args)` on the agent's event loop, from any thread (the HTTP server's)."""
        self._agent_loop().call_soon_threadsafe(lambda: self._spawn(fn(*args), getattr(fn, "__name__", "call")))

    async def on_agent_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the agent's event loop (from the HTTP server's thread, say)."""
        loop = self._agent_loop()
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _from_thread(self, fn: Callable[[], Any]) -> None:
        self._agent_loop().call_soon_threadsafe(fn)

    def _agent_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name}: the event loop used before the agent started")
        return self._loop

    async def on_auth_spike(self, addr: str) -> None:
        """Hook: the orchestrator may halt with security_incident."""

    async def health_checks(self) -> dict[str, dict[str, Any]]:
        return await health.dependency_checks(self.bus, self.engine if self.uses_db else None, self.consumers)

    def export_host_metrics(self) -> None:
        health.export_host_metrics(self.settings.data_dir)

    def base_status(self) -> dict[str, Any]:
        self.export_host_metrics()
        return health.process_status(
            started_at=self.started_at, mode=self.settings.trading_mode, consumers=self.consumers
        )

    # -- lifecycle (final) -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self.auditor.bind(self._loop)
        if not s.redis_url:
            raise StartupError(
                "REDIS_URL is not set (cli-trading up starts an embedded Redis; "
                "a single agent needs REDIS_URL=redis://host:6379/0)"
            )
        self.bus = Bus(s.redis_url)
        if not await self.bus.ping():
            raise StartupError(
                f"Redis is not reachable at {redact_url(s.redis_url)}: start it "
                "(redis-server) or point REDIS_URL at a running server"
            )
        if self.uses_db:
            self.engine = dbengine.make_engine(s.db_url)
            try:
                await dbengine.migrate(self.engine, s.db_url)
            except Exception as exc:  # noqa: BLE001 - turn any connection failure into advice
                raise StartupError(
                    f"database not usable at {redact_url(s.db_url)}: {str(exc)[:300]} "
                    "(check DATABASE_URL, that the server runs and the user may connect)"
                ) from exc
            self.sessions = dbengine.sessionmaker(self.engine)
            if self.engine.dialect.name == "postgresql":  # audit rows without a session (db/pgraw.py)
                self.auditor.held = Held(self.engine)
        self._parts = await self.wire(self.services())
        await self.on_start()
        for sub in self.subscriptions():
            c = Consumer(
                self.bus,
                sub.stream,
                sub.group,
                self.consumer_name,
                sub.handler,
                key=sub.key,
                batch=sub.batch,
                max_failures=s.max_failures,
                claim_idle_ms=s.claim_idle_ms,
                idem_ttl_s=s.idempotency_ttl_s,
            )
            await c.ensure_group()
            self.consumers.append(c)
        for c in self.consumers:
            self._spawn(c.run(self.stop_event), f"consume {c.stream}")
        for loop in [self._audit_loop, *self.loops()]:
            self._spawn(loop(), getattr(loop, "__name__", "loop"))

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() and not self.stop_event.is_set():
            self.log.error("background task crashed", task=task.get_name(), error=repr(task.exception()))
            self.stop_event.set()  # a crashed loop means a broken agent: stop and let supervision restart

    async def _audit_loop(self) -> None:
        await self.auditor.run(self.stop_event, self.sessions, self.write_interval_s)

    async def stop(self) -> None:
        self.stop_event.set()
        for t in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(t), 3)
            t.cancel()
        await self.on_stop()
        await self.flush_audit()
        if self.auditor.held is not None:
            self.auditor.held.close()
        for c in self.consumers:
            await c.close()
        if self.bus:
            await self.bus.close()
        if self.engine:
            await self.engine.dispose()

    async def serve(self) -> int:
        from cli_trading.web import create_app

        s = self.settings
        try:
            await self.start()
        except StartupError as exc:
            self.log.error("cannot start", error=str(exc))
            print(f"{self.name}: cannot start: {exc}", file=sys.stderr)
            await self.stop()
            return 2
        gc.freeze()  # what start-up built (modules, replayed ledger) is never garbage: stop scanning it
        server = agent_server(
            create_app(self, on_loop=lambda app: OnLoop(app, asyncio.get_running_loop())),
            host=s.bind_host,
            port=s.port_of(self.name),
            cert=s.tls_cert_file,
            key=s.tls_key_file,
            on_exit=lambda: self._from_thread(self.stop_event.set),
        )
        loop = asyncio.get_running_loop()
        try:
            server.start()
        except SystemExit:  # uvicorn has logged why (the port is taken)
            print(f"{self.name}: cannot listen on {s.bind_host}:{s.port_of(self.name)}", file=sys.stderr)
            await self.stop()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        self.log.info("agent started", port=s.port_of(self.name), host=s.bind_host)
        await self.stop_event.wait()
        self.log.info("stopping")
        started = server.started
        await asyncio.to_thread(server.stop)
        await self.stop()
        self.log.info("stopped")
        return 0 if started else 1


def secret(settings: Settings, name: str) -> str | None:
    """A secret from the env var or its *_FILE variant."""
    return getattr(settings, name) or read_secret_file(getattr(settings, f"{name}_file"))
