"""The PostgreSQL administration of the command line's tools (db/server_repo.py through the engine
factory): a scratch database made and dropped, other sessions ended, the server's load, and a
server that cannot be reached named as such by `ops health`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from cli_trading.config import Settings, normalize_database_url
from cli_trading.ops import dbtools, infra
from cli_trading.ops.checks import Thresholds
from cli_trading.ops.locate import Located
from tests.support import postgres

pytestmark = pytest.mark.integration


async def _databases(prefix: str) -> set[str]:
    rows = await postgres.fetch(postgres.PG_ADMIN_URL, "SELECT datname FROM pg_database WHERE datname LIKE $1",
                                prefix + "%")
    return {r["datname"] for r in rows}


async def test_scratch_database_exists_inside_and_is_gone_after(own_pg_database: str) -> None:
    url = normalize_database_url(own_pg_database)
    before = await _databases("ct_verify_")
    async with dbtools.pg_scratch(url) as scratch:
        name = scratch.rsplit("/", 1)[1]
        assert name.startswith("ct_verify_") and name in await _databases("ct_verify_") - before
        # a session left open on it does not keep it from being dropped (WITH (FORCE))
        held = await asyncpg.connect(postgres.url_of(name), timeout=5)
    assert name not in await _databases("ct_verify_")
    held.terminate()


async def test_other_sessions_are_ended(own_pg_database: str) -> None:
    others = [await asyncpg.connect(own_pg_database, timeout=5) for _ in range(2)]
    pids = [c.get_server_pid() for c in others]
    ended = await dbtools.pg_terminate_others(normalize_database_url(own_pg_database))
    assert ended == 2
    deadline = time.monotonic() + 10
    # the server ends them a moment later: poll its view (noqa: nothing to wait on but the server)
    while await _sessions(pids) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert await _sessions(pids) == set()
    for c in others:
        c.terminate()


async def _sessions(pids: list[int]) -> set[int]:
    rows = await postgres.fetch(postgres.PG_ADMIN_URL, "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1)", pids)
    return {r["pid"] for r in rows}


def _located(db_url: str, tmp_path: Path) -> Located:
    return Located(data_dir=tmp_path, port_base=7001, redis_url=None, db_url=db_url, settings=Settings())


def test_health_reads_the_servers_load(pg_database: str, tmp_path: Path) -> None:
    check = infra.database_check(_located(normalize_database_url(pg_database), tmp_path), Thresholds())
    assert check.status in ("ok", "warning"), check
    assert check.summary.startswith("PostgreSQL ready; ")
    assert check.evidence["maxConnections"] > 0 and check.evidence["connections"] >= 1
    assert check.evidence["sizeBytes"] > 0 and check.evidence["ungrantedLocks"] >= 0


def test_health_names_an_unreachable_server(free_port: int, tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:secret-pw@127.0.0.1:{free_port}/nothing"
    check = infra.database_check(_located(url, tmp_path), Thresholds())
    assert check.status == "critical"
    assert check.summary == "PostgreSQL not reachable: ConnectionRefusedError", check.summary
    assert "secret-pw" not in str(check.evidence)


def test_health_names_a_missing_database(tmp_path: Path) -> None:
    url = normalize_database_url(postgres.url_of("ct_no_such_database_here"))
    check = infra.database_check(_located(url, tmp_path), Thresholds())
    assert check.status == "critical"
    assert check.summary == "PostgreSQL not reachable: InvalidCatalogNameError", check.summary
