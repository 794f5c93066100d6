"""The optimizer's contract end to end, as an operator drives it: POST /admin/optimize → the
parameter-optimizer's walk-forward → proposals in the params table → approve one → the market
analyst applies it. Ports 32001–32007 (this suite's range)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System, start_system

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    s = start_system(tmp_path)
    yield s
    s.stop()


def wait_for(what: str, probe: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_an_operator_requests_a_search_and_approves_a_proposal(system: System) -> None:
    s = system
    with s.client() as c:
        r = c.post("/admin/optimize", headers=s.admin, content=b'{"strategy":"trend","symbol":"BTC-USD"}')
        assert r.status_code == 202, r.text
        (rid,) = r.json()["requests"]

    def optimizer_done() -> dict[str, Any] | None:
        st = httpx.get(s.url("parameter-optimizer") + "/status", timeout=5).json()
        last = st.get("last") or {}
        return last if last.get("requestId") == rid else None

    last = wait_for("the optimizer's answer", optimizer_done)
    assert last["evaluated"] == 24 and last["proposals"] >= 1, last  # the shipped history has better sets

    def stored() -> list[dict[str, Any]]:
        rows = httpx.get(s.url() + "/admin/params", headers=s.admin, params={"status": "proposed"}, timeout=5).json()
        return [p for p in rows["params"] if p["strategy"] == "trend"]

    rows = wait_for("proposals in the params table", stored, timeout=60)
    assert len(rows) == last["proposals"]
    assert all(p["symbol"] == "BTC-USD" and isinstance(p["score"], float) for p in rows)
    # each proposal listed with its out-of-sample figures and the current set's (never worse)
    for p in rows:
        assert p["outOfSample"]["score"] >= p["currentOutOfSample"]["score"] and p["inSample"]["bars"] > 0, p
    chosen = rows[-1]  # the first proposal (the list is newest id first)
    with s.client() as c:
        ok = c.post(f"/admin/params/{chosen['id']}/approve", headers=s.admin)
        again = c.post(f"/admin/params/{chosen['id']}/approve", headers=s.admin)
    assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.text
    assert again.status_code == 409

    def applied() -> bool:  # the analyst has no database: its audit events are in its log
        for f in s.data_dir.rglob("market-analyst.log*"):
            for line in f.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    e = json.loads(line)
                    if e.get("action") == "params:applied" and e.get("params") == chosen["params"]:
                        return True
        return False

    wait_for("the analyst applies the approved set", applied, timeout=60)
    audit = httpx.get(s.url() + "/admin/audit", headers=s.admin, params={"action": "params:"}, timeout=5).json()
    assert any(e["action"] == "params:approved" and e["target"] == str(chosen["id"]) for e in audit["events"])
