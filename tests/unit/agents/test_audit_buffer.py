"""An agent's audit buffer (agents/audit.py): events queued, written in one transaction, kept
after a failed write. No service: a SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_trading.agents.audit import AuditBuffer
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
