"""Statements sent straight to asyncpg on a session's pooled connection (PostgreSQL only), for
the writes made several times a second under load (audit rows, the run book's group commit,
the paper executor's batch).

Through SQLAlchemy each such write costs a BEGIN, SQLAlchemy's per-row parameter work and a
COMMIT. Here it is one statement taking one array per column (`unnest`: the same statement for
any number of rows, prepared once per connection by asyncpg): sent alone on the session's
connection it commits by itself in one round trip; after other statements of the session it is
part of their transaction. The repository modules (db/) own the statements; this only sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

Columns = Sequence[tuple[str, str]]  # (column, PostgreSQL type) pairs


class Held:
    """One connection of the engine's pool kept by a writer that commits many times a second (the
    run book's group commit, an agent's audit rows, the paper executor's batch), for statements
    that commit by themselves or for one transaction at a time (`transaction`). A session costs
    ~270 us of CPU per transaction around a ~140 us statement (its checkout, begin, commit and
    close); this asks the pool once. One statement or transaction at a time (the writer's own
    lock, or its one batch at a time). A statement that fails invalidates it (the next takes a new
    one from the pool); `close` gives it back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pooled: Any = None

    async def fetch_column(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return [r[0] for r in await self._send("fetch", sql, args)]

    async def execute(self, sql: str, args: Sequence[Any]) -> None:
        await self._send("execute", sql, args)

    async def _send(self, how: str, sql: str, args: Sequence[Any]) -> Any:
        driver = await self._driver()
        try:
            return await getattr(driver, how)(sql, *args)
        except Exception:
            self._drop()
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """BEGIN … COMMIT on the held connection (ROLLBACK on an exception, and the connection
        invalidated as in `fetch_column`), yielding the asyncpg connection for its statements."""
        driver = await self._driver()
        try:
            async with driver.transaction():
                yield driver
        except BaseException:
            self._drop()
            raise

    async def _driver(self) -> Any:
        if self._pooled is None:
            self._pooled = await self.engine.raw_connection()
        return self._pooled.driver_connection

    def _drop(self) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            pooled.invalidate()  # the server may have dropped it: not back to the pool as good

    def close(self) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            pooled.close()


def dialect(session: AsyncSession | Held) -> str:
    if isinstance(session, Held):
        return "postgresql"
    return session.bind.dialect.name if session.bind else "sqlite"


def unnest(columns: Columns, first: int) -> str:
    """unnest($first::type[], ...): one array parameter per column, numbered from `first`."""
    return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, (_, t) in enumerate(columns)) + ")"


def names(columns: Columns, prefix: str = "") -> str:
    return ", ".join(prefix + c for c, _ in columns)


async def _driver(session: AsyncSession) -> tuple[Any, Any]:
    conn = await session.connection()
    pooled = await conn.get_raw_connection()
    return conn, pooled.driver_connection


async def execute(session: AsyncSession | Held, sql: str, args: Sequence[Any]) -> None:
    if isinstance(session, Held):
        return await session.execute(sql, args)
    conn, driver = await _driver(session)
    try:
        await driver.execute(sql, *args)
    except Exception:
        # SQLAlchemy did not see it fail: a connection the server dropped must not go back to
        # the pool as good (the caller's retry gets a new one)
        await conn.invalidate()
        raise


async def fetch_column(session: AsyncSession | Held, sql: str, args: Sequence[Any]) -> list[Any]:
    """The first column of the rows the statement returns."""
    if isinstance(session, Held):
        return await session.fetch_column(sql, args)
    conn, driver = await _driver(session)
    try:
        return [r[0] for r in await driver.fetch(sql, *args)]
    except Exception:
        await conn.invalidate()  # as in `execute`
        raise
