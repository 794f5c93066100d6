"""The system as `cli-trading up --monitoring --edge` runs it, for real: seven agents, a Debian
Prometheus with the project's rules scraping them, and the Debian nginx edge in front of the
orchestrator and the notification manager's incident routes, with TLS and rate limits."""

# ruff: noqa: ASYNC210 - the console test's own short blocking calls (setup, checks) only pause the pilot's loop

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_trading.auth import fingerprint
from cli_trading.cli.client import Target
from cli_trading.console.app import ConsoleApp
from cli_trading.console.client import ConsoleClient, Endpoint
from cli_trading.ops import tls
from tests.e2e.conftest import TOKEN, System, start_system
from tests.e2e.console_pilot import acknowledge, incident_listed
from tests.support.deploy import tool
from tests.support.ports import free_port
from tests.unit.console.screen import screen_text

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    system: System
    prometheus: str
    edge: str
    cert: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 30, pred: Any = bool) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if pred(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr}: {result} after {timeout}s")


def make_cert(folder: Path) -> tuple[Path, Path]:
    return tls.self_signed(folder / "server.crt", folder / "server.key", hosts=["localhost", "127.0.0.1"], days=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tool("prometheus")
    tool("nginx")
    tmp = tmp_path_factory.mktemp("stack")
    cert, key = make_cert(tmp)
    prom_port, am_port, edge_port = free_port(), free_port(), free_port()
    env = {
        "PROMETHEUS_PORT": str(prom_port),
        "PROMETHEUS_SCRAPE_INTERVAL": "1s",
        "ALERTMANAGER_PORT": str(am_port),
        "EDGE_PORT": str(edge_port),
        "EDGE_TLS_CERT_FILE": str(cert),
        "EDGE_TLS_KEY_FILE": str(key),
    }
    system = start_system(tmp, extra_env=env, args=["--monitoring", "--edge"])
    try:
        s = Stack(system, f"http://127.0.0.1:{prom_port}", f"https://127.0.0.1:{edge_port}", cert)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # extras start right after the agents are healthy
            try:
                if httpx.get(f"{s.prometheus}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert system.proc.poll() is None, system.output()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError(f"Prometheus not ready:\n{system.output()[-3000:]}")
        yield s
    finally:
        system.stop()


def test_prometheus_scrapes_every_agent(stack: Stack) -> None:
    up = stack.wait_for("up == 1", pred=lambda r: len(r) >= 7)
    jobs = {r["metric"]["job"] for r in up}
    assert {"orchestrator", "portfolio-manager", "market-analyst", "risk-manager", "trade-executor",
            "notification-manager", "parameter-optimizer"} <= jobs  # fmt: skip


def test_runbook_recording_rules_answer(stack: Stack) -> None:
    # the runbook's two queries, as it sends them
    for name in ("api:latency_p95_5m", "trading:error_rate_5m"):
        result = stack.wait_for(name, timeout=40)
        values = [float(r["value"][1]) for r in result]
        assert values, name
        if name == "trading:error_rate_5m":
            assert all(0 <= v <= 1 for v in values), values


def test_halt_shows_in_prometheus_and_alerts(stack: Stack) -> None:
    r = httpx.post(
        stack.system.url() + "/admin/orchestrate/halt",
        headers={"X-Admin-Token": TOKEN},
        json={"reason": "manual"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    stack.wait_for("max(trading_system_halted) == 1", timeout=20)

    def halt_alert(alerts: list[dict[str, Any]]) -> bool:
        return any(
            a["labels"].get("alertname") == "TradingSystemHalted" and a["state"] in ("pending", "firing")
            for a in alerts
        )

    deadline = time.monotonic() + 20
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if halt_alert(alerts):
            break
        time.sleep(0.5)
    assert halt_alert(alerts), alerts
    fired = next(a for a in alerts if a["labels"]["alertname"] == "TradingSystemHalted")
    assert fired["labels"]["severity"] == "P0"
    assert fired["annotations"].get("runbook")


def test_edge_tls_handshake(stack: Stack) -> None:
    ctx = ssl.create_default_context(cafile=str(stack.cert))
    with httpx.Client(verify=ctx, timeout=5) as c:
        r = c.get(stack.edge + "/health")
        assert r.status_code == 200, r.text
        assert r.headers.get("strict-transport-security")
    # an untrusted client refuses the handshake: the certificate is really the one served
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack.edge + "/health", timeout=5)


def test_an_incident_listed_and_acknowledged_through_the_edge(stack: Stack) -> None:
    """The notification manager's incident routes are published on the edge (TLS, the token)."""
    ctx = ssl.create_default_context(cafile=str(stack.cert))
    with httpx.Client(base_url=stack.edge, verify=ctx, timeout=10) as c:
        drill = {"title": "Edge drill", "severity": "P2"}
        opened = c.post("/admin/incidents", headers={"X-Admin-Token": TOKEN}, json=drill)
        assert opened.status_code == 201, opened.text
        key = opened.json()["id"]
        listed = c.get("/incidents", params={"state": "open"})
        assert listed.status_code == 200, listed.text
        assert key in [i["id"] for i in listed.json()["incidents"]]
        assert c.post(f"/admin/incidents/{key}/ack", json={"by": "alice"}).status_code == 401  # the token still counts
        acked = c.post(f"/admin/incidents/{key}/ack", headers={"X-Admin-Token": TOKEN}, json={"by": "alice"})
        assert acked.status_code == 200, acked.text
        shown = c.get(f"/incidents/{key}").json()
    assert shown["acknowledgedAt"] and shown["commander"] == "alice"
    # the acknowledgement is the notification manager's own, with the token's fingerprint
    direct = httpx.get(stack.system.url("notification-manager") + f"/incidents/{key}", timeout=5).json()
    ack = next(e for e in direct["timeline"] if e.get("kind") == "ack")
    assert ack["actor"] == f"alice ({fingerprint(TOKEN)})", ack
    access = (stack.system.data_dir / "logs" / "nginx" / "access.log").read_text()
    assert re.search(rf'"POST /admin/incidents/{key}/ack HTTP/1\.1" 200 ', access), access[-2000:]


async def test_the_console_acknowledges_an_incident_through_the_edge(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given only the edge's URL (the agents' own ports point nowhere), the console lists the
    incident and acknowledges it."""
    s = stack.system
    monkeypatch.setenv("CLI_TRADING_CA", str(stack.cert))
    opened = httpx.post(
        s.url("notification-manager") + "/admin/incidents",
        headers=s.admin,
        json={"title": "Console edge drill", "severity": "P2"},
        timeout=10,
    ).json()
    key = str(opened["id"])
    nowhere = Target(port_base=free_port(), token=TOKEN)  # nothing listens there: the edge or nothing
    app = ConsoleApp(ConsoleClient(Endpoint(nowhere, stack.edge)), interval=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await incident_listed(app, key, timeout=30)
        await acknowledge(app, pilot, key=key, notifier_url=s.url("notification-manager"), commander="Ada")
        assert "UNREACHABLE" not in screen_text(app) and "429" not in screen_text(app)
    access = (s.data_dir / "logs" / "nginx" / "access.log").read_text()
    assert re.search(rf'"POST /admin/incidents/{key}/ack HTTP/1\.1" 200 ', access), access[-2000:]


def test_edge_401_429_logged_without_token(stack: Stack) -> None:
    ctx = ssl.create_default_context(cafile=str(stack.cert))
    with httpx.Client(base_url=stack.edge, verify=ctx, timeout=5) as c:
        assert c.get("/admin/halts").status_code == 401
        codes = [c.get("/admin/halts", headers={"X-Admin-Token": TOKEN}).status_code for _ in range(30)]
    assert 429 in codes, codes
    assert 200 in codes, codes
    access = stack.system.data_dir / "logs" / "nginx" / "access.log"
    time.sleep(0.5)
    lines = access.read_text().splitlines()
    assert any(" 401 " in ln and "/admin/halts" in ln for ln in lines), lines[-5:]
    assert any(" 429 " in ln and "/admin/halts" in ln for ln in lines), lines[-5:]
    # the runbook's grep finds them
    grep = subprocess.run(["grep", "-E", "(401|403|429)", str(access)], capture_output=True, text=True)
    assert grep.stdout.count("\n") >= 2
    # and the token is in no log file of the run
    leaked = [
        str(p) for p in stack.system.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".log", ".out", ".json") and TOKEN in p.read_text(errors="replace")
    ]  # fmt: skip
    assert not leaked, leaked
