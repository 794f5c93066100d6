"""Who may place an order or page the on-call: a manual order needs the admin token in every mode;
an analysis run stays open; POST /notify and the Alertmanager webhook need their credentials.
Every refusal is a 401 with a JSON body and lands in the audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System, start_system

pytestmark = pytest.mark.e2e

NOTIFY_TOKEN = "notify-token-0123456789abcdef"
AM_TOKEN = "alertmanager-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp: Path = tmp_path_factory.mktemp("auth")
    s = start_system(tmp, extra_env={"NOTIFY_TOKEN": NOTIFY_TOKEN, "ALERTMANAGER_TOKEN": AM_TOKEN})
    yield s
    s.stop()


def audited(s: System, action: str, result: str, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = httpx.get(s.url() + "/admin/audit", params={"action": action, "limit": 200}, headers=s.admin).json()
        found = [e for e in events["events"] if e["result"] == result]
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no audit event {action!r} with result {result!r}")


def adapter_orders(s: System) -> list[dict[str, Any]]:
    return httpx.get(s.url("trade-executor") + "/admin/exec/adapter", headers=s.admin).json()["orders"]


def test_a_manual_order_needs_the_admin_token(guarded_system: System) -> None:
    s = guarded_system
    order = {"symbol": "BTC-USD", "side": "buy", "notional": 500}
    r = httpx.post(s.url() + "/orchestrate/run", json=order, headers={"X-Request-Id": "no-token-1"})
    assert r.status_code == 401 and r.json()["error"] == "missing X-Admin-Token header"
    forged = {"X-Admin-Token": "forged", "X-Request-Id": "forged-1"}
    r = httpx.post(s.url() + "/orchestrate/run", json=order, headers=forged)
    assert r.status_code == 401 and r.json()["error"] == "invalid admin token"
    assert audited(s, "admin:POST /orchestrate/run", "401")
    # no run was started: nothing could reach risk or the exchange
    for rid in ("no-token-1", "forged-1"):
        assert httpx.get(f"{s.url()}/orchestrate/run/{rid}").status_code == 404
        assert not [o for o in adapter_orders(s) if rid in o["orderId"]]
    # an analysis run (no side) stays open, as the runbook sends it
    r = httpx.post(s.url() + "/orchestrate/run", json={"symbol": "BTC-USD"})
    assert r.status_code == 202, r.text
    # with the token the order is accepted (or 409 before the first price)
    deadline = time.monotonic() + 30
    while True:
        r = httpx.post(s.url() + "/orchestrate/run", json=order, headers=s.admin)
        if r.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 202, r.text


def test_notify_needs_a_credential(guarded_system: System) -> None:
    s = guarded_system
    nm = s.url("notification-manager")
    event = {"type": "forged.page", "severity": "critical", "message": "forged P0"}
    assert httpx.post(nm + "/notify", json=event).status_code == 401
    assert httpx.post(nm + "/notify", json=event, headers={"X-Notify-Token": "nope"}).status_code == 401
    assert httpx.post(nm + "/notify", json=event, headers={"X-Notify-Token": NOTIFY_TOKEN}).status_code == 202
    assert httpx.post(nm + "/notify", json=event, headers=s.admin).status_code == 202
    assert audited(s, "admin:POST /notify", "401")

    alert = {"alerts": [{"status": "firing", "labels": {"alertname": "X", "severity": "P0"}, "annotations": {}}]}
    am = nm + "/notify/alertmanager"
    assert httpx.post(am, json=alert).status_code == 401
    assert httpx.post(am, json=alert, headers={"Authorization": "Bearer forged"}).status_code == 401
    # the notify token is not Alertmanager's
    assert httpx.post(am, json=alert, headers={"Authorization": f"Bearer {NOTIFY_TOKEN}"}).status_code == 401
    r = httpx.post(am, json=alert, headers={"Authorization": f"Bearer {AM_TOKEN}"})
    assert r.status_code == 202 and r.json()["published"] == 1
    assert audited(s, "admin:POST /notify/alertmanager", "401")
