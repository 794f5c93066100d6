"""End to end: `cli-trading up` on ports 18001+ with NOTIFY_CONFIG routing every channel to local
receivers. The runbook's scripted incident — halt → ack → unhalt → resolve — through the HTTP
API and the CLI as an operator types it; the post-mortem and the recovery checklist; a failing
receiver driving the notification to notify.events.dlq and the orchestrator's requeue delivering
it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import System, start_system
from tests.support.receivers import Mailbox, Receiver, policy, write_policy

pytestmark = pytest.mark.e2e
CRITICAL = "/slack/trading-critical"


@pytest.fixture
def notify_system(tmp_path: Path, receiver: Receiver, mailbox: Mailbox) -> Iterator[System]:
    doc = policy(receiver, mailbox, loop_seconds=1)
    doc["channels"]["trading-alerts"]["url"] = receiver.url("/fail/trading-alerts", slack=True)
    cfg = write_policy(tmp_path / "notifications.yaml", doc)
    s = start_system(tmp_path, extra_env={"NOTIFY_CONFIG": str(cfg), "MAX_FAILURES": "2"})
    yield s
    s.stop()


def cli(s: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**s.env, "PORT_BASE": str(s.port_base), "ADMIN_TOKEN": s.token, "DATA_DIR": str(s.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "cli_trading", *args], env=env, capture_output=True, text=True, timeout=60
    )


def wait_for(fn: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := fn():
            return out
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_scripted_incident_postmortem_and_recovery_checklist(
    notify_system: System, receiver: Receiver, mailbox: Mailbox
) -> None:
    s = notify_system
    orc, nm = s.client(), s.client("notification-manager")
    # the runbook's Emergency Stop, as written (no Content-Type)
    r = orc.post("/admin/orchestrate/halt", headers=s.admin, content='{"reason":"emergency_stop"}')
    assert r.status_code == 200, r.text
    alert = receiver.wait(CRITICAL, contains="🚨 INCIDENT ALERT 🚨")[0]
    assert "Severity: P0" in alert and "Trading halted: emergency_stop" in alert
    assert "INCIDENT ALERT" in mailbox.wait("trading-oncall@company.com")[0]
    assert any(e["type"] == "halt.emergency_stop" for e in nm.get("/notify/recent").json()["events"])

    listed = cli(s, "incident", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    inc = next(i for i in json.loads(listed.stdout)["incidents"] if i["cause"] == "halt:emergency_stop")
    assert (inc["severity"], inc["status"]) == ("P0", "INVESTIGATING")
    # an id beyond the database's integer range is a clear 422, not a server error
    too_big = nm.get(f"/incidents/{2**64}")
    assert too_big.status_code == 422 and "incident_id" in too_big.text
    assert nm.get("/incidents/999999").status_code == 404

    vr = cli(s, "verify-recovery", "--json")
    assert vr.returncode == 1, vr.stdout
    items = {i["key"]: i for i in json.loads(vr.stdout)["items"]}
    assert len(items) == 10 and not items["trading"]["ok"] and "emergency_stop" in items["trading"]["evidence"]
    assert not items["alerts"]["ok"] and items["health"]["ok"] and items["database"]["ok"]

    acked = cli(s, "incident", "ack", str(inc["id"]), "--by", "alice")
    assert acked.returncode == 0, acked.stderr
    trace = next(e["traceId"] for e in nm.get("/notify/recent").json()["events"] if e["type"] == "halt.emergency_stop")
    again = nm.post("/admin/notify/ack", headers=s.admin, content=json.dumps({"traceId": trace}))
    assert again.status_code == 200 and again.json()["alreadyAcknowledged"], again.text
    assert nm.post("/admin/notify/ack", content=json.dumps({"incidentId": inc["id"]})).status_code == 401
    assert "acknowledged by alice" in receiver.wait(CRITICAL, contains="📊 INCIDENT UPDATE 📊")[0]
    r = orc.post("/admin/orchestrate/unhalt", headers=s.admin, content='{"force": true, "note": "checked"}')
    assert r.status_code == 200, r.text
    wait_for(lambda: nm.get(f"/incidents/{inc['id']}").json()["status"] == "MITIGATING")
    resolved = cli(
        s,
        "incident",
        "resolve",
        str(inc["id"]),
        "--root-cause",
        "operator drill",
        "--resolution",
        "unhalted after checks",
        "--by",
        "alice",
    )
    assert resolved.returncode == 0, resolved.stderr
    assert "Root Cause: operator drill" in receiver.wait(CRITICAL, contains="✅ INCIDENT RESOLVED ✅")[0]

    shown = json.loads(cli(s, "incident", "show", str(inc["id"]), "--json").stdout)
    kinds = [e["kind"] for e in shown["timeline"]]
    for k in ("halt", "detection", "ack", "unhalt", "resolution"):
        assert k in kinds, kinds
    pm = cli(s, "incident", "postmortem", str(inc["id"]))
    assert pm.returncode == 0, pm.stderr
    for text in (
        "Incident Summary",
        "Timeline",
        "Root Cause Analysis",
        "Action Items",
        "Lessons Learned",
        "time to respond",
        "time to mitigate",
        "time to resolve",
        "operator drill",
        "| ack | alice",
    ):
        assert text in pm.stdout, text

    final = json.loads(cli(s, "verify-recovery", "--json", "--documented").stdout)
    items = {i["key"]: i for i in final["items"]}
    assert items["alerts"]["ok"] and items["documentation"]["ok"]
    metrics = nm.get("/metrics").text
    assert 'notifications_sent_total{channel="trading-critical",result="sent"}' in metrics
    assert 'incidents_open{severity="P0"} 0.0' in metrics


def test_failed_notification_goes_to_the_dlq_and_requeue_delivers_it(notify_system: System, receiver: Receiver) -> None:
    s = notify_system
    nm, orc = s.client("notification-manager"), s.client()
    r = nm.post(
        "/notify",
        headers=s.admin,
        content=json.dumps(
            {"type": "metrics.latency", "severity": "warning", "message": "p95 8 s", "context": {"seconds": 8}}
        ),
    )
    assert r.status_code == 202
    dlq_url = "/admin/streams/dlq?stream=notify.events.dlq"

    def latency_entries() -> list[dict[str, Any]]:
        found = orc.get(dlq_url, headers=s.admin).json()["entries"]
        return [e for e in found if e["payload"].get("type") == "metrics.latency"]

    entries = wait_for(latency_entries, timeout=60)
    assert "DeliveryFailed" in entries[0]["error"] and str(receiver.port) not in entries[0]["error"]
    assert len(receiver.text("/slack/ops-team")) == 1
    receiver.failing = False
    r = orc.post(
        "/admin/streams/dlq/requeue",
        headers=s.admin,
        content=json.dumps({"dlqStream": "notify.events.dlq", "id": entries[0]["id"]}),
    )
    assert r.status_code == 200, r.text
    assert "8 s response time" in receiver.wait("/fail/trading-alerts", contains="Severity: P2")[0]
    assert len(receiver.text("/slack/ops-team")) == 1
    assert not latency_entries()
    logs = (s.data_dir / "logs" / "notification-manager.log").read_text()
    assert f":{receiver.port}/" not in logs  # webhook URLs never reach the logs
