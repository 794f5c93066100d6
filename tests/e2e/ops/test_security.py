"""`security-audit.sh`: a token planted in a log file is found (without being printed), --report
preserves the evidence, the exit code follows the worst finding."""

from __future__ import annotations

import json

import httpx

from tests.e2e.ops.conftest import Ops


def test_planted_token_in_a_log_file_is_critical(ops: Ops) -> None:
    token = ops.token()
    planted = ops.data_dir / "logs" / "planted.log"
    planted.write_text(f'{{"msg": "debug"}}\ncurl -H "X-Admin-Token: {token}" http://localhost:7001/pnl/status\n')
    try:
        rc, doc = ops.json_script("security-audit")
    finally:
        planted.unlink()
    hits = [f for f in doc["findings"] if f["id"] == "secret-in-log"]
    assert rc == 2 and doc["exitCode"] == 2
    assert hits and hits[0]["severity"] == "critical" and hits[0]["evidence"]["file"] == str(planted)
    assert hits[0]["evidence"]["line"] == 2
    assert token not in json.dumps(doc)


def test_failed_authentications_are_counted(ops: Ops) -> None:
    for _ in range(6):
        httpx.get(ops.url() + "/admin/streams", headers={"X-Admin-Token": "wrong-token"}, timeout=10)
    httpx.get(ops.url() + "/admin/audit", headers=ops.admin(), timeout=10)  # flushes the audit buffer
    _, doc = ops.json_script("security-audit")
    failures = next(f for f in doc["findings"] if f["id"] == "auth-failures-24h")
    assert failures["severity"] in ("medium", "high") and sum(failures["evidence"]["bySource"].values()) >= 6


def test_report_writes_an_evidence_folder(ops: Ops) -> None:
    p = ops.script("security-audit", "--report")
    assert "# Security audit" in p.stdout and "| severity |" in p.stdout
    folders = sorted((ops.data_dir / "incidents").glob("security-audit-*"))
    assert folders
    # the exit code follows the worst finding of the report: 2 critical/high, 1 medium/low, 0
    sevs = {f["severity"] for f in json.loads((folders[-1] / "report.json").read_text())["findings"]}
    assert p.returncode == (2 if sevs & {"critical", "high"} else 1 if sevs & {"medium", "low"} else 0), p.stderr
    names = {f.name for f in folders[-1].iterdir()}
    assert names >= {"report.md", "report.json", "audit-trail.json", "system-state.json", "logs-manifest.json"}
    trail = json.loads((folders[-1] / "audit-trail.json").read_text())
    assert trail["events"] and all("action" in e for e in trail["events"])
    state = json.loads((folders[-1] / "system-state.json").read_text())
    assert state["health"]["checks"] and state["processes"]
    assert ops.token() not in "".join(f.read_text() for f in folders[-1].iterdir())
