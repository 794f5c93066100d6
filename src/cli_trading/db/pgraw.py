"""Statements sent straight to asyncpg on a session's pooled connection (PostgreSQL only), for
the writes made several times a second under load (audit rows, the run book's group commit).

Through SQLAlchemy each such write costs a BEGIN, SQLAlchemy's per-row parameter work and a
COMMIT. Here it is one statement taking one array per column (`unnest`: the same statement for
any number of rows, prepared once per connection by asyncpg): sent alone on the session's
connection it commits by itself in one round trip; after other statements of the session it is
part of their transaction. The repository modules (db/) own the statements; this only sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

Columns = Sequence[tuple[str, str]]  # (column, PostgreSQL type) pairs


def dialect(session: AsyncSession) -> str:
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


async def execute(session: AsyncSession, sql: str, args: Sequence[Any]) -> None:
    conn, driver = await _driver(session)
    try:
        await driver.execute(sql, *args)
    except Exception:
        # SQLAlchemy did not see it fail: a connection the server dropped must not go back to
        # the pool as good (the caller's retry gets a new one)
        await conn.invalidate()
        raise


async def fetch_column(session: AsyncSession, sql: str, args: Sequence[Any]) -> list[Any]:
    """The first column of the rows the statement returns."""
    conn, driver = await _driver(session)
    try:
        return [r[0] for r in await driver.fetch(sql, *args)]
    except Exception:
        await conn.invalidate()  # as in `execute`
        raise


@asynccontextmanager
async def transaction(session: AsyncSession) -> AsyncIterator[Any]:
    """An asyncpg transaction on the session's connection (BEGIN … COMMIT, ROLLBACK on an
    exception), yielding the asyncpg connection for the statements in it: fetched once, where
    each `execute` asks SQLAlchemy's session for it again. Not to be mixed with SQLAlchemy
    statements on the same session (they would begin a transaction of their own)."""
    conn, driver = await _driver(session)
    try:
        async with driver.transaction():
            yield driver
    except Exception:
        await conn.invalidate()  # as in `execute`: the pool gets no connection in doubt back
        raise
