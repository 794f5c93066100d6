"""deploy/postgres/init on a real PostgreSQL (CI's server; TEST_PG_ADMIN_URL overrides it): the
runbook's psql commands work as typed, with the environment docker-compose.yml gives the postgres
container, including the slow-query command written for PostgreSQL <= 12 (mean_time)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import postgres
from tests.support.deploy import ROOT, run, run_ok, tool

INIT = sorted((ROOT / "deploy/postgres/init").glob("*.sql"))

# Typed in the runbook as: docker exec cli-trading-postgres-1 psql -U trader -c "<sql>"
RUNBOOK_SQL = [
    "SELECT * FROM pg_stat_activity;",
    "SELECT count(*) FROM pg_stat_activity;",
    "SELECT * FROM pg_locks WHERE NOT granted;",
    "VACUUM ANALYZE;",
]
SLOW_QUERIES = "SELECT query, mean_time, calls FROM pg_stat_statements ORDER BY mean_time DESC LIMIT 10;"


@pytest.fixture(scope="module")
def scratch_db() -> Iterator[str]:
    tool("psql")  # the runbook's commands are psql's
    with postgres.database("ct_deploy") as url:
        yield url


def container_env(services: dict) -> dict[str, str]:
    """The postgres container's PG* variables (what `docker exec ... psql` inherits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({k: v for k, v in services["postgres"]["environment"].items() if k == "PGOPTIONS"})
    return env


def test_init_scripts_run_twice_cleanly(scratch_db: str, services: dict) -> None:
    assert INIT
    for _ in range(2):  # idempotent: a re-run (or a restore on top) must not fail
        for f in INIT:
            run_ok([tool("psql"), scratch_db, "-v", "ON_ERROR_STOP=1", "-f", str(f)], env=container_env(services))


def test_runbook_queries_work_as_typed(scratch_db: str, services: dict) -> None:
    for sql in RUNBOOK_SQL:
        run_ok([tool("psql"), scratch_db, "-v", "ON_ERROR_STOP=1", "-c", sql], env=container_env(services))


def test_slow_query_command_finds_mean_time(scratch_db: str, services: dict) -> None:
    # EXPLAIN resolves every name without reading the statistics, which need the library
    # preloaded (docker-compose.yml does; a test server may not).
    out = run_ok(
        [tool("psql"), scratch_db, "-v", "ON_ERROR_STOP=1", "-c", f"EXPLAIN {SLOW_QUERIES}"],
        env=container_env(services),
    )
    assert "pg_stat_statements" in out


def test_agents_do_not_see_the_compatibility_view(scratch_db: str) -> None:
    """Without the container's PGOPTIONS (the agents' connections), pg_stat_statements is the
    extension's own view: the schema the agents' tables go into is untouched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    res = run([tool("psql"), scratch_db, "-v", "ON_ERROR_STOP=1", "-Atc", "SHOW search_path"], env=env)
    assert res.returncode == 0 and "runbook" not in res.stdout
    res = run([tool("psql"), scratch_db, "-v", "ON_ERROR_STOP=1", "-c", f"EXPLAIN {SLOW_QUERIES}"], env=env)
    assert res.returncode != 0 and "mean_time" in res.stderr
