"""Integration fixtures: the REAL Redis and PostgreSQL servers (CI has them; a test that needs one
fails, never skips, when it is missing) and a SQLite file.

- Redis: a database of the test's own on the session's private redis-server (tests/conftest.py).
- PostgreSQL: the session's fresh database (tests/conftest.py); each test gets an empty schema of
  its own in it (through the connection's search_path), so every test starts from an empty
  database and tests don't see each other's rows.
- SQLite: a new file per test.

TEST_PG_ADMIN_URL overrides the PostgreSQL server's address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cli_trading.config import normalize_database_url
from cli_trading.db import engine as dbengine
from cli_trading.embedded_redis import EmbeddedRedis
from tests.support import postgres

BACKENDS = ("postgresql", "sqlite")


@pytest.fixture(scope="module")
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this module's own (the embedded one `cli-trading up` starts), on a free
    port: for tests that stop or reconfigure the server itself."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


# Redis (`redis_url`, `redis_client`) and PostgreSQL (`pg_database`, `own_pg_database`,
# `pg_url`) come from tests/conftest.py.
@asynccontextmanager
async def pg_schema(pg_database: str) -> AsyncIterator[str]:
    """An empty schema of this test's own in the session database, dropped afterwards."""
    async with postgres.schema(pg_database) as name:
        yield name


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
