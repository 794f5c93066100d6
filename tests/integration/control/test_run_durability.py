"""RunBook.durable against a real database (SQLite and PostgreSQL): concurrent callers share transactions, a change is
in the `runs` table when durable() returns, and a failed commit leaves the changes to the next;
and the orchestrator commits a run's sizing before its risk request goes out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import text

from cli_trading.agents.audit import AuditBuffer
from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.bus import Delivery
from cli_trading.config import load_settings, normalize_database_url
from cli_trading.contracts import Stream, order_id_for
from cli_trading.control.runs import Run, RunBook
from cli_trading.db import engine as dbengine
from cli_trading.db import repo, run_repo
from tests.support import postgres


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Both databases: on PostgreSQL runs and audit rows are written by one asyncpg statement."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
        return
    async with postgres.adatabase("ct_runs") as url:
        yield normalize_database_url(url)


async def drop_other_connections(sessions: Any) -> None:
    """The server ends every other connection to this database (the pool's included)."""
    async with sessions() as s:
        await s.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


async def test_durable_is_a_group_commit_and_survives_a_failed_one(db_url: str) -> None:
    engine = dbengine.make_engine(db_url)
    await dbengine.migrate(engine, db_url)
    sessions = dbengine.sessionmaker(engine)
    book = RunBook()
    commits = 0
    real = sessions

    def counting() -> object:
        nonlocal commits
        commits += 1
        return real()

    async def accept(i: int) -> None:
        r = Run(f"r{i}", "BTC-USD", datetime.now(UTC), manual=True, side="buy")
        book.add(r)
        await book.durable(counting)

    await asyncio.gather(*(accept(i) for i in range(50)))
    async with real() as s:
        assert (await s.execute(text("SELECT count(*) FROM runs"))).scalar() == 50
    assert commits <= 3, f"{commits} transactions for 50 concurrent callers"
    # a commit that fails: the caller sees it, the change is written by the next one
    run = book.get("r1")
    assert run is not None
    book.finish(run, "filled", reason=None, now=datetime.now(UTC))

    def broken() -> object:
        raise OSError("database gone")

    with pytest.raises(OSError):
        await book.durable(broken)
    await book.durable(real)
    async with real() as s:
        outcome = (await s.execute(text("SELECT outcome FROM runs WHERE request_id = 'r1'"))).scalar()
    assert outcome == "filled"
    await engine.dispose()


async def test_a_dropped_connection_fails_one_write_and_the_next_one_lands(db_url: str) -> None:
    """The server drops the pooled connections (a restart): the write that meets it fails (the
    caller answers 503 or retries), the connection is not given back as good, the next write
    lands with everything, new runs and changes."""
    engine = dbengine.make_engine(db_url)
    await dbengine.migrate(engine, db_url)
    sessions = dbengine.sessionmaker(engine)
    book = RunBook()
    first = Run("d1", "BTC-USD", datetime.now(UTC), manual=True, side="buy")
    book.add(first)
    await book.durable(sessions)
    book.finish(first, "filled", reason=None, now=datetime.now(UTC))
    book.add(Run("d2", "BTC-USD", datetime.now(UTC), manual=True, side="sell"))
    if db_url.startswith("postgresql"):
        await drop_other_connections(sessions)
        with pytest.raises(Exception):  # noqa: B017, PT011 - asyncpg's connection error, whichever
            await book.durable(sessions)
    await book.durable(sessions)
    async with sessions() as s:
        rows = (await s.execute(text("SELECT request_id, outcome FROM runs ORDER BY request_id"))).all()
    assert [tuple(r) for r in rows] == [("d1", "filled"), ("d2", None)]
    await engine.dispose()


async def test_audit_rows_read_back_as_written(db_url: str) -> None:
    """A detail is JSON (Decimals as strings), no detail is JSON null, as SQLAlchemy wrote them."""
    engine = dbengine.make_engine(db_url)
    await dbengine.migrate(engine, db_url)
    sessions = dbengine.sessionmaker(engine)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "ts": now,
            "agent": "risk-manager",
            "action": "risk:approved",
            "actor": None,
            "source": None,
            "target": "BTC-USD",
            "result": None,
            "request_id": "a1",
            "detail": None,
        },
        {
            "ts": now,
            "agent": "orchestrator",
            "action": "run:signal",
            "actor": "tok:abc",
            "source": "10.0.0.1",
            "target": None,
            "result": "ok",
            "request_id": "a2",
            "detail": {"confidence": 0.5, "qty": Decimal("0.1")},
        },
    ]
    async with sessions() as s, s.begin():
        await repo.add_audit(s, rows=rows)
    async with sessions() as s:
        back = await repo.audit_tail(s, limit=10)
    by_rid = {e.request_id: e for e in back}
    assert by_rid["a1"].detail is None and by_rid["a1"].target == "BTC-USD"
    assert by_rid["a2"].detail == {"confidence": 0.5, "qty": "0.1"}
    assert (by_rid["a2"].actor, by_rid["a2"].source, by_rid["a2"].result) == ("tok:abc", "10.0.0.1", "ok")
    assert by_rid["a2"].ts == now
    await engine.dispose()


async def test_a_sized_run_is_committed_before_risk_hears_of_it(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy's signal sizes its run; the sizing is in `runs` before the risk request goes
    out, so a run found at start without a side (`resolve`: hold) never had an order on its way."""
    orc = Orchestrator(load_settings(data_dir=tmp_path, redis_url=redis_url, admin_token="x" * 20))
    await orc.start()
    try:
        run = await orc.start_run(
            symbol="BTC-USD", side=None, qty=None, notional=None, request_id="analysis-1", manual=False
        )
        at_risk: list[tuple[str | None, Decimal | None, str | None]] = []
        publish = orc.bus.publish

        async def watched(stream: str, payload: Any) -> str:
            if stream == Stream.RISK_REQUESTS:
                async with orc.session() as s:
                    row = await run_repo.get_run(s, request_id=payload.requestId)
                assert row is not None
                at_risk.append((row.side, row.qty, row.order_id))
            return await publish(stream, payload)

        monkeypatch.setattr(orc.bus, "publish", watched)
        signal = {
            "requestId": run.request_id,
            "symbol": "BTC-USD",
            "side": "buy",
            "confidence": 0.9,
            "price": "100",
            "strategy": "sma",
        }
        await orc.on_signals([Delivery("signals", "1-0", signal)])
        assert run.qty is not None and run.qty > 0
        assert at_risk == [("buy", run.qty, order_id_for(run.request_id))]
    finally:
        await orc.stop()


async def test_audit_rows_kept_when_the_server_dropped_the_connection(db_url: str) -> None:
    """The audit buffer's write meets a connection the server dropped: the rows stay buffered,
    the connection is not reused, the next write lands them."""
    engine = dbengine.make_engine(db_url)
    await dbengine.migrate(engine, db_url)
    sessions = dbengine.sessionmaker(engine)
    buffer = AuditBuffer("orchestrator", clock=lambda: datetime.now(UTC), log=structlog.get_logger())
    buffer.add("run:requested", request_id="k1", side="buy")
    await buffer.flush(sessions)  # a pooled connection now exists
    buffer.add("run:filled", request_id="k1", target="ord-k1")
    if db_url.startswith("postgresql"):
        await drop_other_connections(sessions)
        await buffer.flush(sessions)
        assert [r["action"] for r in buffer.rows] == ["run:filled"]  # failed: kept for the next try
    await buffer.flush(sessions)
    assert buffer.rows == []
    async with sessions() as s:
        actions = sorted(e.action for e in await repo.audit_tail(s, limit=10))
    assert actions == ["run:filled", "run:requested"]
    await engine.dispose()
