"""An agent's audit rows on PostgreSQL (agents/audit.py): written on the connection the auditor
keeps (`pgraw.Held`), not through a session, committed when the flush returns; a connection the
server dropped loses nothing (the rows stay queued, the next flush takes a new connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cli_trading.agents.audit import Auditor
from cli_trading.config import normalize_database_url
from cli_trading.db import engine as dbengine
from cli_trading.db.pgraw import Held

pytestmark = pytest.mark.integration


def no_sessions() -> Any:
    raise AssertionError("the audit rows went through a session")


def committed(url: str) -> list[tuple[str, str | None]]:
    """What another connection sees: committed rows only."""
    with psycopg.connect(url) as c:
        return [(r[0], r[1]) for r in c.execute("SELECT action, request_id FROM audit_events ORDER BY id")]


@pytest.fixture
async def engine(own_pg_database: str) -> AsyncIterator[AsyncEngine]:
    url = normalize_database_url(own_pg_database)
    e = dbengine.make_engine(url)
    await dbengine.migrate(e, url)
    yield e
    await e.dispose()


async def test_rows_go_on_the_held_connection_and_survive_a_dropped_one(
    engine: AsyncEngine, own_pg_database: str, tmp_path: Path
) -> None:
    log = mock.Mock()
    auditor = Auditor(
        "trade-executor", clock=lambda: datetime.now(UTC), log=log, uses_db=True, access_log=tmp_path / "a.log"
    )
    auditor.held = Held(engine)
    auditor.add("order:filled", request_id="r1", target="ord-r1", qty="0.01")
    auditor.add("order:rejected", request_id="r2", result="insufficient_cash")
    await auditor.flush(no_sessions)
    assert committed(own_pg_database) == [("order:filled", "r1"), ("order:rejected", "r2")]
    assert auditor.buffer.rows == []

    held_pid = auditor.held._pooled.driver_connection.get_server_pid()  # noqa: SLF001 - which one to drop
    with psycopg.connect(own_pg_database, autocommit=True) as c:  # the server drops the connection
        c.execute("SELECT pg_terminate_backend(%s)", (held_pid,))
    auditor.add("order:filled", request_id="r3", target="ord-r3")
    await auditor.flush(no_sessions)
    assert [c.args[0] for c in log.warning.call_args_list] == ["buffered write failed, will retry"]
    assert [r["request_id"] for r in auditor.buffer.rows] == ["r3"]
    await auditor.flush(no_sessions)  # a new connection from the pool
    assert committed(own_pg_database)[-1] == ("order:filled", "r3")
    assert auditor.buffer.rows == []
    auditor.held.close()
