"""Writing a halt transition without waiting for the event loop.

Under load the orchestrator's loop serves dozens of run requests per iteration, and every await
in the halt path waits for the rest of an iteration: a halt of four round trips took 70-150 ms
that way. So the transition is written synchronously, on connections kept for it alone, while
the loop stands still: the Redis flag and the notification in one round trip, then (PostgreSQL)
the state and its record in one autocommit statement. Nothing else in the process should run
before a halt is in place, and the loop stalls for those two round trips only (timeouts bound it
when a server does not answer).

SQLite is written by the caller instead, on its usual async session: a blocking write there
could wait for a lock that an async transaction holds across an await of this very loop.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from datetime import datetime
from typing import Any

import hiredis
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cli_trading.bus import REDIS_DOWN, STREAM_MAXLEN, encode
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY, NotifyEvent, Stream
from cli_trading.db import engine as dbengine
from cli_trading.db import repo
from cli_trading.haltgate import SET_FLAG
from cli_trading.logs import get_logger
from cli_trading.trading.halt import HaltState

log = get_logger("halts")
TIMEOUT_S = 1.0  # a server that does not answer stalls the loop this long at most, then we go on


class HaltWriter:
    def __init__(self, *, redis_url: str, db_url: str) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self.line = FlagLine.for_url(redis_url)  # None: TLS or a Unix socket, redis-py sends the flag
        self.db: sa.Engine | None = None
        url = make_url(db_url)
        if url.get_backend_name() == "postgresql":
            self.db = sa.create_engine(
                url.set(drivername="postgresql+psycopg"),
                isolation_level="AUTOCOMMIT",
                json_serializer=dbengine.json_text,
                pool_size=1,
                max_overflow=0,
                pool_timeout=TIMEOUT_S,
                connect_args={
                    "connect_timeout": max(1, int(TIMEOUT_S)),
                    "options": f"-c statement_timeout={int(TIMEOUT_S * 1000)}",
                },
            )

    @property
    def writes_database(self) -> bool:
        return self.db is not None

    def warm_up(self) -> None:
        """Open both connections now, so that the first halt does not pay for them. A database
        this driver cannot reach (options only asyncpg understands, say) leaves the records to
        the agent's own async session: slower under load, never lost."""
        with contextlib.suppress(*REDIS_DOWN):  # Redis down now: the flag call retries, then falls back
            self.redis.ping()
            if self.line is not None:
                self.line.call([("PING",)])
        if self.db is not None:
            try:
                with self.db.connect() as c:
                    c.execute(sa.text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001 - any failure means: do not use this path
                log.warning("halt records go through the async session", error=str(exc)[:200])
                self.db.dispose()
                self.db = None

    def publish(self, state: HaltState) -> list[str]:
        """The live flag alone (at start, and restoring it after Redis lost it)."""
        return _members(self.redis.execute_command(*_set_flag(state)))

    def flag(self, state: HaltState, notice: NotifyEvent) -> list[str]:
        """Set the live flag and publish the notification in one round trip; returns the orders
        in flight at that instant (read atomically with the flag: the guarantee)."""
        flag = _set_flag(state)
        notify = ("XADD", Stream.NOTIFY, "MAXLEN", "~", STREAM_MAXLEN, "*", "data", encode(notice))
        if self.line is not None:
            members, _ = self.line.call([flag, notify])
        else:
            pipe = self.redis.pipeline(transaction=False)
            members, _ = pipe.execute_command(*flag).execute_command(*notify).execute()
        return _members(members)

    def record(self, state: HaltState, event: dict[str, Any], now: datetime) -> int:
        """PostgreSQL only: the state and its record in one statement; returns the record's id."""
        if self.db is None:
            raise RuntimeError("halt writer: record() needs the PostgreSQL connection")
        (stmt,) = repo.halt_statements("postgresql", state=state, event=event, now=now)
        with self.db.connect() as c:
            return c.execute(stmt).scalar_one()

    def close(self) -> None:
        self.redis.close()
        if self.line is not None:
            self.line.close()
        if self.db is not None:
            self.db.dispose()


def _set_flag(state: HaltState) -> tuple[Any, ...]:
    """The command that sets the flag and returns the orders in flight (EVAL, not EVALSHA:
    nothing to check first, no round trip for a script that is not loaded yet)."""
    return ("EVAL", SET_FLAG, 2, HALT_KEY, INFLIGHT_KEY, *[x for kv in state.to_redis().items() for x in kv])


def _members(members: list[Any]) -> list[str]:
    return sorted(m.decode() if isinstance(m, bytes) else m for m in members)


class FlagLine:
    """The halt flag's own Redis connection: a blocking socket with the timeouts kept by the
    kernel, so that a halt's round trip is one send and, as a rule, one receive. Under load each
    system call of the halt door's thread is followed by a wait for the interpreter lock, and
    redis-py in timeout mode makes four or five per round trip (a readiness check of the pooled
    connection, a receive that finds nothing yet, a poll, the receive). Plain TCP URLs only."""

    def __init__(self, addr: tuple[str, int], setup: list[tuple[Any, ...]]) -> None:
        self.addr, self.setup = addr, setup
        self.sock: socket.socket | None = None

    @classmethod
    def for_url(cls, url: str) -> FlagLine | None:
        opts = redis.connection.parse_url(url)
        if "path" in opts or "connection_class" in opts:  # Unix socket, TLS: redis-py's job
            return None
        setup: list[tuple[Any, ...]] = []
        if opts.get("password"):
            setup.append(("AUTH", *([opts["username"]] if opts.get("username") else []), opts["password"]))
        if opts.get("db"):
            setup.append(("SELECT", opts["db"]))
        return cls((opts.get("host") or "localhost", int(opts.get("port") or 6379)), setup)

    def call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send the commands in one write and return their replies; any failure closes the
        connection (the next call opens a new one) and raises redis.ConnectionError."""
        try:
            if self.sock is None:
                self.sock = self._connect()
            return self._send(self.sock, commands)
        except (OSError, hiredis.ProtocolError, redis.ResponseError) as exc:
            self.close()
            raise redis.ConnectionError(f"halt flag: {exc}") from exc

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.addr, timeout=TIMEOUT_S)
        sock.settimeout(None)  # blocking: the kernel enforces the timeouts below
        tv = struct.pack("ll", int(TIMEOUT_S), int(TIMEOUT_S % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.setup:
            self._send(sock, self.setup)
        return sock

    @staticmethod
    def _send(sock: socket.socket, commands: list[tuple[Any, ...]]) -> list[Any]:
        sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
        reader, replies = hiredis.Reader(), []
        while len(replies) < len(commands):
            data = sock.recv(65536)  # a timeout raises BlockingIOError
            if not data:
                raise ConnectionResetError("redis closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise redis.ResponseError(str(reply))
                replies.append(reply)
        return replies

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
