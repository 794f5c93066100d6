"""An agent's audit buffer (agents/audit.py): events queued, written in one transaction, kept
after a failed write. No service: a SQLite file."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_trading.agents.audit import AuditBuffer, Auditor
from cli_trading.db import engine as dbengine
from cli_trading.db import repo
from cli_trading.db.models import Base

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **_: Any) -> None:
        self.warnings.append(event)


def refusing() -> Any:
    raise ConnectionError("database gone")


async def test_events_are_written_together_and_kept_after_a_failure(tmp_path: Path) -> None:
    engine = dbengine.make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unit.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions, log = dbengine.sessionmaker(engine), Log()
    buffer = AuditBuffer("orchestrator", clock=lambda: NOW, log=log)
    buffer.add("run:order", request_id="r1", target="ord-r1", actor=None, side="buy")
    buffer.add("pnl:reset", actor="tok:ab", source="10.0.0.1", previous="100")
    await buffer.flush(refusing)
    assert len(buffer.rows) == 2 and log.warnings == ["buffered write failed, will retry"]
    await buffer.flush(sessions)
    assert buffer.rows == []
    async with sessions() as s:
        rows = await repo.audit_tail(s, limit=10)
    await engine.dispose()
    first, second = sorted(rows, key=lambda e: e.id)
    assert (first.agent, first.action, first.request_id, first.target) == ("orchestrator", "run:order", "r1", "ord-r1")
    assert first.detail == {"side": "buy"}
    assert (second.actor, second.source, second.detail) == ("tok:ab", "10.0.0.1", {"previous": "100"})


async def test_an_event_from_another_thread_reaches_the_loops_buffer(tmp_path: Path) -> None:
    auditor = Auditor("orchestrator", clock=lambda: NOW, log=Log(), uses_db=True, access_log=tmp_path / "a.log")
    auditor.bind(asyncio.get_running_loop())
    threads: list[int] = []
    add = auditor.buffer.add
    auditor.buffer.add = lambda action, **f: (threads.append(threading.get_ident()), add(action, **f))  # type: ignore[method-assign]  # spy
    await asyncio.to_thread(auditor.add, "admin:POST /x", actor="tok:ab")  # the HTTP server's thread
    await asyncio.sleep(0)  # the loop runs what was handed to it
    assert [r["action"] for r in auditor.buffer.rows] == ["admin:POST /x"]
    assert threads == [threading.get_ident()]  # written by the loop's thread, never the server's


def test_an_admin_request_is_audited_and_logged_without_its_token(tmp_path: Path) -> None:
    log_file = tmp_path / "admin-access.log"
    auditor = Auditor("trade-executor", clock=lambda: NOW, log=Log(), uses_db=True, access_log=log_file)
    auditor.admin("POST", "/admin/exchange/reconcile", actor="tok:ab12", addr="10.0.0.1", status=403,
                  request_id="req-1")
    (row,) = auditor.buffer.rows
    assert row["action"] == "admin:POST /admin/exchange/reconcile" and row["result"] == "403"
    line = json.loads(log_file.read_text().strip().splitlines()[-1])
    assert line["route"] == "/admin/exchange/reconcile" and line["status"] == 403 and line["actor"] == "tok:ab12"
    assert line["auth"] == "X-Admin-Token" and line["ts"] == NOW.isoformat()


def test_an_agent_without_a_database_logs_its_events(tmp_path: Path) -> None:
    class InfoLog(Log):
        def __init__(self) -> None:
            super().__init__()
            self.infos: list[dict[str, Any]] = []

        def info(self, event: str, **fields: Any) -> None:
            self.infos.append({"event": event, **fields})

    log = InfoLog()
    auditor = Auditor("market-analyst", clock=lambda: NOW, log=log, uses_db=False, access_log=tmp_path / "a.log")
    auditor.add("params:applied", target="sma")
    assert auditor.buffer.rows == [] and log.infos == [{"event": "audit", "action": "params:applied", "target": "sma"}]


async def test_a_flush_during_the_intervals_write_returns_once_that_write_is_done(tmp_path: Path) -> None:
    """flush_audit while the write loop's transaction is under way: the rows that write took
    must be in the database when flush returns (it returned at once before: nothing queued)."""
    engine = dbengine.make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unit.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    real, entered, release = dbengine.sessionmaker(engine), asyncio.Event(), asyncio.Event()

    def slow_sessions() -> Any:  # the interval's write, held inside its transaction
        class Held:
            async def __aenter__(self) -> Any:
                self.s = real()
                session = await self.s.__aenter__()
                entered.set()
                await release.wait()
                return session

            async def __aexit__(self, *exc: Any) -> Any:
                return await self.s.__aexit__(*exc)

        return Held()

    buffer = AuditBuffer("orchestrator", clock=lambda: NOW, log=Log())
    buffer.add("halt:halt", actor="tok:ab")
    interval = asyncio.create_task(buffer.flush(slow_sessions))
    await entered.wait()
    flushed = asyncio.create_task(buffer.flush(real))
    await asyncio.sleep(0.05)
    assert not flushed.done(), "flush returned while the rows taken by the interval's write were not written"
    release.set()
    await asyncio.gather(interval, flushed)
    async with real() as s:
        assert [e.action for e in await repo.audit_tail(s, limit=10)] == ["halt:halt"]
    await engine.dispose()
