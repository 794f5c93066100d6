"""Fixtures every test folder shares: ports, Redis and PostgreSQL, allocated, never hard-coded.

- `port_block(n)`: the first of n consecutive free ports, reserved across every pytest process on
  the machine (tests/support/ports.py); `free_port()` for one.
- `redis_url` / `redis_client`: an empty database of its own on a private redis-server started
  for the session (tests/support/redis_server.py); `private_redis` for the server itself.
- `pg_database` (session) and `own_pg_database` (one test): a fresh PostgreSQL database, dropped
  afterwards (tests/support/postgres.py); `pg_url` is the session one in SQLAlchemy's async form;
  `db_url`: a test's own empty database, the test run once on PostgreSQL and once on SQLite.

The unit tests (tests/unit) use none of them: they run without any server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cli_trading.config import normalize_database_url
from tests.support import ports, postgres
from tests.support.redis_server import LEFTOVERS, PrivateRedis

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder is the layer: tests/integration/** are marked `integration`, tests/e2e/** `e2e`
    (so `-m "not integration and not e2e"` is the unit tests alone, like `pytest tests/unit`)."""
    for item in items:
        layer = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if layer in ("integration", "e2e"):
            item.add_marker(layer)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Redis clients earlier tests left connected (a leaked process or task): their databases
    were not handed out again, but the test that left them should end what it starts."""
    if LEFTOVERS:
        terminalreporter.section("Redis clients left by earlier tests")
        for line in dict.fromkeys(LEFTOVERS):
            terminalreporter.write_line(line)


# -- ports -----------------------------------------------------------------------------------
@pytest.fixture
def port_block() -> Iterator[Callable[[int], int]]:
    """Call it with a count: the first port of a block of that many free ports, held until the
    test ends. `cli-trading up --port-base B` uses B..B+6."""
    taken: list[int] = []

    def reserve(n: int = 10) -> int:
        taken.append(ports.reserve(n))
        return taken[-1]

    yield reserve
    for base in taken:
        ports.release(base)


@pytest.fixture
def free_port(port_block: Callable[[int], int]) -> int:
    return port_block(1)


# -- Redis -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """An emptied Redis database no other test is using."""
    return private_redis.fresh_db()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url, socket_connect_timeout=2)
    try:
        yield r
    finally:
        await r.flushdb()
        await r.aclose()


# -- PostgreSQL ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test session; yields its plain postgresql:// URL."""
    with postgres.database("ct_test") as url:
        yield url


@pytest.fixture
async def own_pg_database() -> AsyncIterator[str]:
    """A database of this test's own (plain URL), for an agent that migrates it on start."""
    async with postgres.adatabase("ct_own") as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this test's own, on each backend in turn (the plain URL a user
    writes: the agents and `load_settings` take it as it is)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'trading.db'}"
        return
    async with postgres.adatabase("ct_own") as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database in the SQLAlchemy async form."""
    return normalize_database_url(pg_database)
