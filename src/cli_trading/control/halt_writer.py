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
from datetime import datetime
from typing import Any

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
        if self.db is not None:
            try:
                with self.db.connect() as c:
                    c.execute(sa.text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001 - any failure means: do not use this path
                log.warning("halt records go through the async session", error=str(exc)[:200])
                self.db.dispose()
                self.db = None

    def publish(self, state: HaltState) -> list[str]:
        """The live flag alone (restoring it after Redis lost it)."""
        flat = [x for kv in state.to_redis().items() for x in kv]
        return _members(self.redis.eval(SET_FLAG, 2, HALT_KEY, INFLIGHT_KEY, *flat))

    def flag(self, state: HaltState, notice: NotifyEvent) -> list[str]:
        """Set the live flag and publish the notification in one round trip; returns the orders
        in flight at that instant (read atomically with the flag: the guarantee)."""
        flat = [x for kv in state.to_redis().items() for x in kv]
        pipe = self.redis.pipeline(transaction=False)
        # EVAL, not EVALSHA: a pipeline with registered scripts checks them first (a round trip)
        pipe.eval(SET_FLAG, 2, HALT_KEY, INFLIGHT_KEY, *flat)
        pipe.xadd(Stream.NOTIFY, {"data": encode(notice)}, maxlen=STREAM_MAXLEN, approximate=True)
        members, _ = pipe.execute()
        return _members(members)

    def record(self, state: HaltState, event: dict[str, Any], now: datetime) -> int:
        """PostgreSQL only: the state and its record in one statement; returns the record's id."""
        assert self.db is not None
        (stmt,) = repo.halt_statements("postgresql", state=state, event=event, now=now)
        with self.db.connect() as c:
            return c.execute(stmt).scalar_one()

    def close(self) -> None:
        self.redis.close()
        if self.db is not None:
            self.db.dispose()


def _members(members: list[Any]) -> list[str]:
    return sorted(m.decode() if isinstance(m, bytes) else m for m in members)
