"""`manage-secrets.sh`: init, status without values, graceful and forced rotation against the
running agents (which read ADMIN_TOKEN_FILE), audited and notified."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import redis

from cli_trading.auth import fingerprint
from tests.e2e.ops.conftest import Ops


def _streams(ops: Ops, token: str) -> int:
    return httpx.get(ops.url() + "/admin/streams", headers={"X-Admin-Token": token}, timeout=10).status_code


def test_init_creates_strong_private_secrets(ops: Ops, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    p = ops.script("manage-secrets", "init", SECRETS_DIR=str(folder))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("admin_token", "postgres_password", "slack_webhook_url", "pagerduty_key", "smtp_url",
                 "exchange_api_key", "exchange_api_secret"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    token = (folder / "admin_token").read_text().strip()
    assert len(token) >= 40 and (folder / "exchange_api_key").read_text() == ""
    ops.script("manage-secrets", "init", SECRETS_DIR=str(folder))
    assert (folder / "admin_token").read_text().strip() == token  # never overwritten
    rc, doc = ops.json_script("manage-secrets", "status", SECRETS_DIR=str(folder))
    assert rc == 0 and token not in json.dumps(doc)
    rows = {r["secret"]: r for r in doc["secrets"]}
    assert rows["admin_token"]["fingerprint"] == fingerprint(token) and rows["admin_token"]["ageDays"] >= 0
    assert rows["exchange_api_key"]["state"].startswith("placeholder") and rows["postgres_password"]["usedBy"]


def test_graceful_rotation_keeps_the_old_token_within_grace(ops: Ops) -> None:
    old = ops.token()
    assert _streams(ops, old) == 200
    rc, res = ops.json_script("manage-secrets", "rotate")
    assert rc == 0 and res["mode"] == "graceful" and res["audited"] and res["notified"], res
    new = ops.token()
    assert new != old and old not in json.dumps(res) and new not in json.dumps(res)
    assert _streams(ops, new) == 200  # picked up without a restart
    assert _streams(ops, old) == 200  # still valid within ADMIN_TOKEN_GRACE_S
    prev = json.loads(Path(f"{ops.token_file}.previous").read_text())
    assert prev["token"] == old and prev["validUntil"] > res["previousValidUntil"][:10]


def test_forced_rotation_revokes_the_old_token_at_once(ops: Ops) -> None:
    old = ops.token()
    p = ops.script("manage-secrets", "rotate", "--force")
    assert p.returncode == 0, p.stderr
    new = ops.token()
    assert _streams(ops, old) == 401
    assert _streams(ops, new) == 200
    assert not Path(f"{ops.token_file}.previous").exists()
    assert stat.S_IMODE(ops.token_file.stat().st_mode) == 0o600


def test_rotation_is_audited_and_notified(ops: Ops) -> None:
    events = httpx.get(ops.url() + "/admin/audit", params={"action": "secrets:", "limit": 10},
                       headers=ops.admin(), timeout=10).json()["events"]
    assert {e["result"] for e in events} >= {"graceful", "forced"}
    assert ops.token() not in json.dumps(events)
    assert events[0]["detail"]["newFingerprint"] == fingerprint(ops.token())
    r = redis.Redis.from_url(ops.redis_url)
    found = [json.loads(f[b"data"]) for _, f in r.xrange("notify.events")]
    rotated = [e for e in found if e["type"] == "security.secret_rotated"]
    assert rotated and rotated[-1]["severity"] == "warning" and rotated[-1]["context"]["mode"] == "forced"


def test_status_shows_the_token_in_use(ops: Ops) -> None:
    rc, doc = ops.json_script("manage-secrets", "status")
    assert rc == 0
    assert doc["adminTokenInUse"] == f"file {ops.token_file}"
    assert ops.token() not in json.dumps(doc)
    assert os.environ.get("ADMIN_TOKEN") is None or os.environ["ADMIN_TOKEN"] not in json.dumps(doc)
