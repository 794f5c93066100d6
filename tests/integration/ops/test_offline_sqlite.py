"""The SQLite path with the system stopped: backup, verify, restore (the halt is written into the
restored database), and the health check of a stopped system. No port is served here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from cli_trading.db import engine as dbengine
from cli_trading.db.models import Fill, HaltStateRow, Mark

ROOT = Path(__file__).resolve().parents[3]
NOTHING_LISTENS = "19901"


def _fill(n: int, side: str = "buy") -> dict:
    return {"order_id": f"ord-{n}", "ts": datetime.now(UTC), "day": "2026-01-01", "symbol": "BTC-USD", "side": side,
            "qty": Decimal("0.01"), "price": Decimal("50000") + n, "fee": Decimal("0.5")}


async def _db(url: str, *, fills: list[dict] | None = None) -> dict:
    engine = dbengine.make_engine(url)
    try:
        await dbengine.migrate(engine, url)
        async with dbengine.sessionmaker(engine)() as s, s.begin():
            if fills:
                await s.execute(Fill.__table__.insert(), fills)
                await s.merge(Mark(symbol="BTC-USD", price=Decimal("51000"), ts=datetime.now(UTC)))
            ids = [r for r in (await s.scalars(select(Fill.order_id).order_by(Fill.id))).all()]
            halt = await s.get(HaltStateRow, 1)
        return {"fills": ids, "halt": (halt.reason, halt.note) if halt else None}
    finally:
        await engine.dispose()


def _run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "ADMIN_TOKEN",
                                                               "ADMIN_TOKEN_FILE", "BACKUP_DIR")}
    env.update({"DATA_DIR": str(data), "PORT_BASE": NOTHING_LISTENS, "PATH": f"{Path(sys.executable).parent}:"
                f"{env.get('PATH', '')}"})
    return subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], env=env, capture_output=True, text=True,
                          timeout=120, check=False, cwd=data)


def test_sqlite_backup_verify_restore_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'trading.db'}"
    before = asyncio.run(_db(url, fills=[_fill(1), _fill(2)]))
    p = _run(data, "backup-system.sh", "backup")
    assert p.returncode == 0, p.stdout + p.stderr
    backup = next((data / "backups").iterdir())
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "sqlite" and manifest["ledger"]["fills"] == 2
    assert manifest["redis"] is None and (backup / "database.sqlite").exists()
    assert oct(backup.stat().st_mode & 0o777) == "0o700"

    v = _run(data, "backup-system.sh", "verify")
    assert v.returncode == 0, v.stdout + v.stderr

    asyncio.run(_db(url, fills=[_fill(3, "sell")]))
    r = _run(data, "backup-system.sh", "restore", backup.name)
    assert r.returncode == 0, r.stdout + r.stderr
    after = asyncio.run(_db(url))
    assert after["fills"] == before["fills"] == ["ord-1", "ord-2"]
    assert after["halt"] == ("system_error", "restore")

    h = _run(data, "comprehensive-health-check.sh", "--json")
    doc = json.loads(h.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert h.returncode == 2 and checks["agent:orchestrator"]["status"] == "critical"
    assert checks["database"]["status"] == "ok" and checks["halt"]["evidence"]["source"] == "database"
    assert checks["backup"]["status"] == "ok"
