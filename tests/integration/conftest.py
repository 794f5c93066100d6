"""Integration fixtures: the REAL Redis and PostgreSQL servers (CI has them; a test that needs one
fails, never skips, when it is missing) and a SQLite file.

- Redis: a dedicated database number (11 by default), flushed before and after every test.
- PostgreSQL: a fresh database `ct_test_<random>` for the test session, dropped at the end; each
  test gets an empty schema of its own in it (through the connection's search_path), so every
  test starts from an empty database and tests don't see each other's rows.
- SQLite: a new file per test.

TEST_REDIS_URL and TEST_PG_ADMIN_URL override the server addresses.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cli_trading.config import normalize_database_url
from cli_trading.db import engine as dbengine
from cli_trading.embedded_redis import EmbeddedRedis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("postgresql", "sqlite")


# -- Redis -----------------------------------------------------------------------------------
@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url, socket_connect_timeout=2)
    await r.flushdb()  # raises (test errors) when Redis is not there: no silent skip
    try:
        yield r
    finally:
        await r.flushdb()
        await r.aclose()


@pytest.fixture(scope="module")
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this module's own (the embedded one `cli-trading up` starts), on a free
    port: tests using it need no database number of the shared server and no lock."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


# -- PostgreSQL ------------------------------------------------------------------------------
def _pg_base(url: str) -> str:
    return url.rsplit("/", 1)[0]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test session; yields its plain postgresql:// URL."""
    name = f"ct_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{_pg_base(PG_ADMIN_URL)}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def own_pg_database() -> AsyncIterator[str]:
    """A database of this test's own (plain URL), for an agent that migrates it on start."""
    name = f"ct_own_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{_pg_base(PG_ADMIN_URL)}/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database in the SQLAlchemy async form."""
    return normalize_database_url(pg_database)


@asynccontextmanager
async def pg_schema(pg_database: str) -> AsyncIterator[str]:
    """An empty schema of this test's own in the session database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_database, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


# -- SQLite ----------------------------------------------------------------------------------
@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "trading.db"


@pytest.fixture
def sqlite_url(sqlite_path: Path) -> str:
    return f"sqlite+aiosqlite:///{sqlite_path}"


# -- both backends ---------------------------------------------------------------------------
@dataclass
class Database:
    backend: str
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"


@pytest.fixture(params=BACKENDS)
async def empty_db(request: pytest.FixtureRequest, pg_database: str, sqlite_url: str) -> AsyncIterator[Database]:
    """An engine on an empty database, PostgreSQL or SQLite (every test using it runs on both)."""
    async with AsyncExitStack() as stack:
        if request.param == "postgresql":
            url = normalize_database_url(pg_database)
            schema = await stack.enter_async_context(pg_schema(pg_database))
            engine = dbengine.make_engine(url, connect_args={"server_settings": {"search_path": schema}})
        else:
            url = sqlite_url
            engine = dbengine.make_engine(url)
        try:
            yield Database(request.param, url, engine, dbengine.sessionmaker(engine))
        finally:
            await engine.dispose()


@pytest.fixture
async def db(empty_db: Database) -> Database:
    """A migrated database on both backends."""
    await dbengine.migrate(empty_db.engine, empty_db.url)
    return empty_db
