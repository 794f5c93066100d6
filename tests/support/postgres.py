"""The real PostgreSQL for tests (127.0.0.1:5432, trust auth; TEST_PG_ADMIN_URL overrides): a
database of a test's or a session's own, created here and dropped afterwards. The one place the
test suite creates databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(name: str) -> str:
    """The plain postgresql:// URL of database `name` on the test server."""
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def address(url: str) -> tuple[str, int]:
    """Where the server of `url` listens (host, port): TEST_PG_ADMIN_URL's server, not a guess."""
    u = make_url(url)
    return u.host or "127.0.0.1", u.port or 5432


def via(url: str, host: str, port: int) -> str:
    """`url`'s database reached through another address (a proxy in front of the server)."""
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def new_name(prefix: str = "ct_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def database(prefix: str = "ct_test") -> Iterator[str]:
    """A new empty database (its plain URL), dropped afterwards even while connections remain.
    Synchronous, for session fixtures and threads that run no event loop."""
    name = new_name(prefix)
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url_of(name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def adatabase(prefix: str = "ct_test") -> AsyncIterator[str]:
    """`database()` for async fixtures."""
    name = new_name(prefix)
    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def schema(database_url: str) -> AsyncIterator[str]:
    """An empty schema of this test's own in `database_url`, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()
