"""Admin API security, stream operations and the operator CLI against `cli-trading up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from cli_trading.auth import fingerprint
from cli_trading.contracts import AGENT_PORTS
from tests.e2e.conftest import TOKEN, System, start_system
from tests.e2e.runbook import commands, run
from tests.support.redis_server import PrivateRedis

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin_system(tmp_path_factory: pytest.TempPathFactory, private_redis: PrivateRedis):  # noqa: ANN201
    """Redis of its own (so the test can reach the streams) and a lockout that cannot trip."""
    redis_url = private_redis.fresh_db()
    s = start_system(
        tmp_path_factory.mktemp("admin"),

        extra_env={
            "REDIS_URL": redis_url,
            "AUTH_FAIL_LIMIT": "100000",
            "DAILY_TARGET_PCT": "500",
            "DAILY_LOSS_LIMIT_PCT": "90",
        },
    )
    yield s
    s.stop()


def admin_routes(s: System, agent: str) -> list[tuple[str, str]]:
    spec = httpx.get(s.url(agent) + "/openapi.json").json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() if p.startswith("/admin/") for m in ops]


def cli(s: System, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PORT_BASE": str(s.port_base), "DATA_DIR": str(s.data_dir)}
    env.pop("ADMIN_TOKEN", None)
    if token:
        env["ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cli_trading", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_every_admin_route_of_every_agent_needs_the_token(admin_system: System) -> None:
    seen = 0
    for agent in AGENT_PORTS:
        for method, path in admin_routes(admin_system, agent):
            url = admin_system.url(agent) + path.replace("{param_id}", "1").replace("{decision}", "approve")
            for headers in ({}, {"X-Admin-Token": "wrong-token"}):
                r = httpx.request(method, url, headers=headers)
                assert r.status_code == 401, f"{agent} {method} {path} with {headers}: {r.status_code}"
                assert r.json()["error"]
            seen += 1
    assert seen >= 12
    s = admin_system
    ok = {("GET", "/admin/streams"), ("GET", "/admin/halts"), ("GET", "/admin/audit"), ("GET", "/admin/params")}
    for method, path in ok:
        assert httpx.request(method, s.url() + path, headers=s.admin).status_code == 200
    assert httpx.get(s.url("trade-executor") + "/admin/exec/adapter", headers=s.admin).status_code == 200
    for open_path in ("/pnl/status", "/health", "/status", "/metrics"):  # readable without, and with, a token
        assert httpx.get(s.url() + open_path).status_code == 200
        assert httpx.get(s.url() + open_path, headers=s.admin).status_code == 200


def test_parameter_decisions_validate_the_id(admin_system: System) -> None:
    """Found by fuzzing: an id past the column's range was a 500 (OverflowError)."""
    with admin_system.client() as c:
        too_big = c.post("/admin/params/99999999999999999999/approve", headers=admin_system.admin)
        unknown = c.post("/admin/params/424242/reject", headers=admin_system.admin)
    assert too_big.status_code == 422 and "param_id" in too_big.text
    assert unknown.status_code == 404 and "424242" in unknown.json()["error"]


def test_stream_operations_in_the_runbook_shapes(admin_system: System) -> None:
    s, r = admin_system, redis.Redis.from_url(admin_system.env["REDIS_URL"])
    [pending_cmd] = commands("/admin/streams/pending")
    p = json.loads(run(pending_cmd, port=s.port_base, token=TOKEN))
    count, lo, hi, consumers = p["summary"]
    assert p["count"] == count and isinstance(consumers, list) and "oldestIdleMs" in p
    # a dead-lettered notification, requeued with the runbook's own command, is delivered again
    payload = {
        "type": "test.requeued",
        "severity": "info",
        "message": "from the DLQ",
        "context": {},
        "ts": "2026-01-01T00:00:00Z",
        "traceId": "requeue-trace-1",
    }
    entry = {
        "originalStream": "notify.events",
        "group": "notify",
        "id": "1-1",
        "payload": payload,
        "error": "receiver down",
        "failures": 5,
        "ts": "2026-01-01T00:00:00Z",
    }
    dlq_id = r.xadd("notify.events.dlq", {"data": orjson.dumps(entry)}).decode()
    listed = [c for c in commands("/admin/streams/dlq?") if "requeue" not in c]
    entries = json.loads(run(listed[0], port=s.port_base, token=TOKEN))["entries"]
    assert entries[-1]["id"] == dlq_id and entries[-1]["payload"]["message"] == "from the DLQ"
    [requeue_cmd] = commands("/admin/streams/dlq/requeue")
    res = json.loads(run(requeue_cmd.replace("[MESSAGE_ID]", dlq_id), port=s.port_base, token=TOKEN))
    assert res["count"] == 1 and r.xlen("notify.events.dlq") == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recent = httpx.get(s.url("notification-manager") + "/notify/recent").json()["events"]
        if any(e.get("traceId") == "requeue-trace-1" for e in recent):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the requeued notification was not consumed again")
    # unknown streams and groups are 404 with a JSON error, never 500
    for path in (
        "/admin/streams/pending?stream=no.such.stream&group=nope",
        "/admin/streams/pending?stream=notify.events&group=nope",
        "/admin/streams/dlq?stream=no.such.stream",
    ):
        got = httpx.get(s.url() + path, headers=s.admin)
        assert got.status_code == 404 and "error" in got.json(), path
    bad = httpx.post(
        s.url() + "/admin/streams/dlq/requeue", headers=s.admin, json={"dlqStream": "notify.events.dlq", "id": "9-9"}
    )
    assert bad.status_code == 404
    overview = httpx.get(s.url() + "/admin/streams", headers=s.admin).json()["streams"]
    assert {"exec.orders", "notify.events", "risk.requests"} <= {o["stream"] for o in overview}


def test_audit_trail_and_no_token_anywhere(admin_system: System) -> None:
    s = admin_system
    httpx.post(
        s.url() + "/admin/orchestrate/halt",
        headers={**s.admin, "X-Request-Id": "audit-check-1"},
        json={"reason": "manual", "note": "audit check"},
    )
    httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin)
    events = httpx.get(s.url() + "/admin/audit", headers=s.admin, params={"limit": 200, "action": "admin:"}).json()[
        "events"
    ]
    halt = next(e for e in events if e["requestId"] == "audit-check-1")
    assert halt["action"] == "admin:POST /admin/orchestrate/halt" and halt["result"] == "ok"
    assert halt["actor"] == fingerprint(TOKEN) and halt["source"] == "127.0.0.1" and halt["agent"] == "orchestrator"
    access = (s.data_dir / "logs" / "admin-access.log").read_text()
    assert "X-Admin-Token" in access and fingerprint(TOKEN) in access and "audit-check-1" in access
    time.sleep(0.5)
    for f in [*(s.data_dir / "logs").glob("*"), s.data_dir / "trading.db", s.data_dir / "up.out"]:
        assert TOKEN.encode() not in f.read_bytes(), f"the admin token leaked into {f.name}"


def test_operator_cli_against_the_running_system(admin_system: System) -> None:
    s = admin_system
    st = cli(s, "status", "--json")
    assert st.returncode == 0, st.stdout[:2000]
    doc = json.loads(st.stdout)
    assert set(doc["agents"]) == set(AGENT_PORTS) and doc["pnl"]["halted"] is False and doc["streams"]
    h = cli(s, "halt", "--reason", "emergency_stop", "--note", "cli", "--json")
    assert h.returncode == 0 and json.loads(h.stdout)["haltReason"] == "emergency_stop"
    assert cli(s, "status", "--json").returncode == 1  # halted: scripts see it in the exit code
    assert cli(s, "unhalt", token="wrong").returncode == 1
    assert cli(s, "unhalt").returncode == 0
    assert json.loads(cli(s, "pnl", "--json").stdout)["halted"] is False
    for args in (
        ["streams", "--json"],
        ["streams", "pending", "--json"],
        ["streams", "dlq", "--json"],
        ["audit", "tail", "--json"],
    ):
        res = cli(s, *args)
        assert res.returncode == 0, (args, res.stderr)
        json.loads(res.stdout)
    logs = cli(s, "logs", "orchestrator", "--lines", "3")
    assert logs.returncode == 0 and all(json.loads(line) for line in logs.stdout.splitlines())
    assert cli(s, "streams", "requeue").returncode == 2
    shown = cli(s, "config", "show", "--json")
    assert shown.returncode == 0 and TOKEN not in shown.stdout and json.loads(shown.stdout)["admin_token"] == "***"


def test_cli_says_when_nothing_runs(tmp_path: Path, port_block: Callable[[int], int]) -> None:
    env = {**os.environ, "PORT_BASE": str(port_block(10)), "DATA_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "cli_trading", "status"], capture_output=True, text=True, env=env)
    assert res.returncode == 3 and "not running" in res.stderr


def test_lockout_rotation_and_forced_revocation(tmp_path: Path) -> None:
    token_file = tmp_path / "admin_token"
    token_file.write_text("first-token-0123456789abcdef\n")
    env = {"ADMIN_TOKEN_FILE": str(token_file), "ADMIN_TOKEN": "", "AUTH_FAIL_LIMIT": "5", "AUTH_LOCKOUT_S": "3"}
    s = start_system(tmp_path, extra_env=env)
    try:
        url = s.url() + "/admin/halts"

        def get(tok: str) -> int:
            return httpx.get(url, headers={"X-Admin-Token": tok}).status_code

        assert get("first-token-0123456789abcdef") == 200
        codes = [get("wrong") for _ in range(6)]
        assert codes[:4] == [401] * 4 and codes[-1] == 429
        r = httpx.get(url, headers={"X-Admin-Token": "wrong"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert get("first-token-0123456789abcdef") == 429  # locked out is locked out
        time.sleep(3.5)
        assert get("first-token-0123456789abcdef") == 200  # the lockout expires
        # graceful rotation: the new token works at once, the old one until the grace ends
        until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        Path(f"{token_file}.previous").write_text(
            json.dumps({"token": "first-token-0123456789abcdef", "validUntil": until})
        )
        token_file.write_text("second-token-0123456789abcdef\n")
        assert get("second-token-0123456789abcdef") == 200
        assert get("first-token-0123456789abcdef") == 200
        # forced rotation (the runbook's breach procedure) revokes the old token at once
        Path(f"{token_file}.previous").unlink()
        token_file.write_text("third-token-0123456789abcdef\n")
        assert get("first-token-0123456789abcdef") == 401
        assert get("second-token-0123456789abcdef") == 401
        assert get("third-token-0123456789abcdef") == 200
        recent = httpx.get(s.url("notification-manager") + "/notify/recent")
        assert recent.status_code == 200 and "events" in recent.json()
        for leaked in ("first-token", "second-token", "third-token"):  # failures were notified, tokens never
            assert leaked not in recent.text
    finally:
        s.stop()


def test_failed_auth_spike_raises_a_security_event(tmp_path: Path) -> None:
    s = start_system(
        tmp_path,

        extra_env={"AUTH_SPIKE_THRESHOLD": "5", "AUTH_FAIL_LIMIT": "1000", "AUTH_SPIKE_HALTS": "true"},
    )
    try:
        for _ in range(6):
            httpx.get(s.url() + "/admin/halts", headers={"X-Admin-Token": "guess"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = httpx.get(s.url("notification-manager") + "/notify/recent").json()["events"]
            if any(e["type"] == "security.auth_failures" and e["severity"] == "critical" for e in events):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no security event after a spike of failed authentications")
        pnl = httpx.get(s.url() + "/pnl/status").json()
        assert pnl["halted"] and pnl["haltReason"] == "security_incident"
    finally:
        s.stop()
