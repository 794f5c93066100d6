"""An agent's audit: events queued as decisions are made (a decision makes several) and written
in batches, one transaction per interval (`AuditBuffer`; a failed write keeps them, the latest
`KEEP_AFTER_FAILURE`, for the next try), and the admin access log (`Auditor`). On PostgreSQL the
batch is one statement on a connection the auditor keeps (`pgraw.Held`: no session, no BEGIN and
COMMIT around it; it commits by itself); on SQLite a session's transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from cli_trading.db import repo
from cli_trading.db.pgraw import Held
from cli_trading.logs import file_logger

KEEP_AFTER_FAILURE = 50_000


class AuditBuffer:
    def __init__(self, agent: str, *, clock: Callable[[], datetime], log: Any) -> None:
        self.agent, self.clock, self.log = agent, clock, log
        self.rows: list[dict[str, Any]] = []
        # one write at a time: a flush called while the interval's write is under way waits for
        # it, so "flushed" means everything queued before the call is in the database
        self._writing = asyncio.Lock()

    def add(self, action: str, **fields: Any) -> None:
        """Queue one event: who (`actor`, `source`), on what (`target`), with what `result`, for
        which `request_id`; any other field goes to its detail."""
        self.rows.append(
            {
                "ts": self.clock(),
                "agent": self.agent,
                "action": action,
                "actor": fields.pop("actor", None),
                "source": fields.pop("source", None),
                "target": fields.pop("target", None),
                "result": fields.pop("result", None),
                "request_id": fields.pop("request_id", None),
                "detail": fields or None,
            }
        )

    async def flush(self, sessions: Callable[[], Any], held: Held | None = None) -> None:
        """Write what is queued in one transaction (`held`: one statement on that connection);
        on failure it stays queued for the next try."""
        async with self._writing:
            if not self.rows:
                return
            rows, self.rows = self.rows, []
            try:
                if held is not None:
                    await repo.add_audit(held, rows=rows)
                else:
                    async with sessions() as s, s.begin():
                        await repo.add_audit(s, rows=rows)
            except Exception as exc:  # noqa: BLE001 - keep them for the next try
                self.rows[:0] = rows[-KEEP_AFTER_FAILURE:]
                self.log.warning("buffered write failed, will retry", error=str(exc)[:200])


class Auditor:
    """Who did what, for one agent: its audit events (queued in an `AuditBuffer`, written by
    `run` once per interval) and the admin access log (a line per admin request, in
    admin-access.log). `add` may be called from any thread: an event from the HTTP server's
    thread is handed to the agent's event loop, to which the buffer belongs. An agent without a
    database logs its events instead."""

    def __init__(
        self, agent: str, *, clock: Callable[[], datetime], log: Any, uses_db: bool, access_log: Path
    ) -> None:
        self.agent, self.clock, self.log, self.uses_db = agent, clock, log, uses_db
        self.buffer = AuditBuffer(agent, clock=clock, log=log)
        self._loop: asyncio.AbstractEventLoop | None = None  # the agent's, once started (`bind`)
        self._loop_thread = threading.get_ident()
        self._access_log = file_logger(access_log, "cli_trading.admin_access")
        # PostgreSQL: the connection the rows are written on (set by the agent at start, closed
        # by it at stop after the last flush)
        self.held: Held | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The agent's event loop (at start): events from other threads are handed to it."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def add(self, action: str, **fields: Any) -> None:
        if not self.uses_db:
            self.log.info("audit", action=action, **fields)
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(functools.partial(self.add, action, **fields))
            return
        self.buffer.add(action, **fields)

    def admin(self, method: str, route: str, *, actor: str | None, addr: str, status: int, request_id: str) -> None:
        """An admin request: an audit event and a line of the access log."""
        result = "ok" if status < 400 else str(status)
        self.add(f"admin:{method} {route}", actor=actor, source=addr, target=route, result=result,
                 request_id=request_id)
        line = {
            "ts": self.clock().isoformat(),
            "agent": self.agent,
            "method": method,
            "route": route,
            "status": status,
            "client": addr,
            "auth": "X-Admin-Token",
            "actor": actor,
            "requestId": request_id,
        }
        self._access_log.info(orjson.dumps(line).decode())

    async def flush(self, sessions: Callable[[], Any] | None) -> None:
        if sessions is not None:
            await self.buffer.flush(sessions, self.held)

    async def run(self, stop: asyncio.Event, sessions: Callable[[], Any] | None, interval_s: float) -> None:
        """Write what is queued every `interval_s` until `stop` (one transaction per interval)."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            await self.flush(sessions)
