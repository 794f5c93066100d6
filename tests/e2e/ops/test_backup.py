"""backup → trade on → restore → the state equals the snapshot; corrupted backups are refused and
change nothing; verify restores into a scratch database."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from decimal import Decimal
from pathlib import Path

from tests.e2e.ops.conftest import Ops, pg_fetch

LEDGER = ("cash", "realized", "fees")


def _snapshot(ops: Ops) -> dict:
    pnl = ops.pnl()
    return {"fills": ops.fills(), **{k: str(pnl[k]) for k in LEDGER},
            "positions": {p["symbol"]: Decimal(str(p["qty"])).normalize() for p in pnl["positions"]}}


def _halt_rows(ops: Ops) -> list:
    return asyncio.run(pg_fetch(ops.pg_url, "SELECT halted, reason, note FROM halt_state"))


def _latest(ops: Ops) -> Path:
    return sorted(p for p in (ops.data_dir / "backups").iterdir() if not p.name.startswith("."))[-1]


def test_backup_trade_restore_equals_snapshot(ops: Ops) -> None:
    ops.trade()  # something in the ledger before the backup
    ops.halt()  # a still ledger: the snapshot and the backup see the same fills
    time.sleep(1.5)
    before = _snapshot(ops)
    p = ops.script("backup-system", "backup")
    assert p.returncode == 0, p.stderr
    manifest = json.loads((_latest(ops) / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "postgresql" and manifest["ledger"]["fills"] == len(before["fills"])
    assert manifest["redis"]["keys"] > 0 and "cli-trading:halt" not in json.dumps(manifest)  # no raw keys listed

    ops.unhalt()
    run = ops.trade()  # trade on after the backup
    assert run["outcome"] == "filled", run
    assert len(ops.fills()) > len(before["fills"])

    p = ops.script("backup-system", "restore")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "recomputed PnL equals" in p.stdout
    after = _snapshot(ops)
    assert after["fills"] == before["fills"]
    assert after["positions"] == before["positions"]
    for k in LEDGER:
        assert abs(float(after[k]) - float(before[k])) < 1e-6, (k, before[k], after[k])
    pnl = ops.pnl()
    assert pnl["halted"] and pnl["haltReason"] == "system_error" and pnl["haltNote"] == "restore"
    assert _halt_rows(ops)[0]["reason"] == "system_error"
    ops.unhalt()


def test_corrupted_backup_is_refused_and_nothing_changes(ops: Ops) -> None:
    if not (ops.data_dir / "backups").exists():
        assert ops.script("backup-system", "backup").returncode == 0
    bad = ops.data_dir / "backups" / "corrupted-copy"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(_latest(ops), bad)
    dump = bad / "database.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    ops.halt()  # a still ledger, so that "nothing changed" is observable
    time.sleep(1.5)
    fills, halt, pnl = ops.fills(), _halt_rows(ops), ops.pnl()
    p = ops.script("backup-system", "restore", "corrupted-copy")
    assert p.returncode == 1
    msg = " ".join(p.stderr.split())
    assert "failed its checksum check: database.dump does not match" in msg and "Nothing was changed" in msg
    assert ops.fills() == fills and _halt_rows(ops) == halt
    assert ops.pnl()["haltReason"] == pnl["haltReason"] == "manual"
    ops.unhalt()

    v = ops.script("backup-system", "verify", "corrupted-copy")
    assert v.returncode == 1
    listing = ops.script("backup-system", "list", "--json")
    rows = {r["id"]: r for r in json.loads(listing.stdout)["backups"]}
    assert rows["corrupted-copy"]["verification"]["ok"] is False
    shutil.rmtree(bad)


def test_verify_restores_into_scratch_database(ops: Ops) -> None:
    assert ops.script("backup-system", "backup").returncode == 0
    fills = ops.fills()
    rc, res = ops.json_script("backup-system", "verify", "latest")
    assert rc == 0 and res["ok"], res
    assert ops.fills()[: len(fills)] == fills  # the live system was not rolled back (it trades on)
    left = asyncio.run(pg_fetch(ops.pg_url, "SELECT datname FROM pg_database WHERE datname LIKE 'ct_verify_%'"))
    assert not left
    rows = json.loads(ops.script("backup-system", "list", "--json").stdout)["backups"]
    assert rows[-1]["verification"]["ok"] and rows[-1]["bytes"] > 0 and rows[-1]["ageHours"] >= 0


def test_retention_keeps_the_newest(ops: Ops, tmp_path: Path) -> None:
    env = {"BACKUP_DIR": str(tmp_path / "b")}
    for _ in range(3):
        assert ops.script("backup-system", "backup", "--keep", "2", **env).returncode == 0
    rows = json.loads(ops.script("backup-system", "list", "--json", **env).stdout)["backups"]
    assert len(rows) == 2
