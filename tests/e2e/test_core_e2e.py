"""The core capability as a user meets it: `cli-trading up`, paper trading on replayed candles,
a manual order, and /pnl/status equal to a recomputation from the fills table."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from decimal import Decimal

import httpx
import pytest

from cli_trading.contracts import AGENT_PORTS
from cli_trading.trading.ledger import FillRecord, replay

pytestmark = pytest.mark.e2e


def wait_outcome(client: httpx.Client, rid: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/orchestrate/run/{rid}")
        if r.status_code == 200 and r.json()["outcome"]:
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"run {rid} has no outcome after {timeout}s")


def test_every_agent_serves_health_status_metrics_openapi(system) -> None:
    for agent in AGENT_PORTS:
        with system.client(agent) as c:
            assert c.get("/health").json()["status"] == "ok"
            assert c.get("/status").json()["agent"] == agent
            assert "http_request_duration_seconds" in c.get("/metrics").text
            assert c.get("/openapi.json").json()["info"]["title"].endswith(agent)


def test_paper_trading_fills_and_pnl_matches_the_ledger(system) -> None:
    with system.client() as c:
        r = c.post(
            "/orchestrate/run", content=b'{"symbol":"BTC-USD","side":"buy","notional":250}', headers=system.admin
        )
        assert r.status_code == 202, r.text
        run = wait_outcome(c, r.json()["requestId"])
        assert run["outcome"] == "filled", run
        # analyses on new bars run by themselves; wait until some reached an outcome
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            dec = [line for line in c.get("/metrics").text.splitlines() if line.startswith("trading_decisions_total")]
            if sum(float(x.rsplit(" ", 1)[1]) for x in dec) >= 5:
                break
            time.sleep(0.5)
        assert dec, "no automatic decisions were made"
        # stop new fills, let in-flight ones settle, then compare with the fills table
        c.post("/admin/orchestrate/halt", headers=system.admin, content=b'{"reason":"manual","note":"e2e check"}')
        time.sleep(1.5)
        pnl = c.get("/pnl/status").json()
    db = sqlite3.connect(system.data_dir / "trading.db")
    fills = [
        FillRecord(o, s, side, Decimal(q), Decimal(p), Decimal(f))
        for o, s, side, q, p, f in db.execute("SELECT order_id, symbol, side, qty, price, fee FROM fills ORDER BY id")
    ]
    assert fills, "no fills recorded"
    assert {t for (t,) in db.execute("SELECT typeof(price) FROM fills")} == {"text"}  # never a binary float
    marks = {p["symbol"]: Decimal(p["mark"]) for p in pnl["positions"]}
    ledger = replay(Decimal("10000"), fills, marks)
    snap = ledger.snapshot()
    assert Decimal(pnl["cash"]) == snap.cash
    assert Decimal(pnl["realized"]) == snap.realized
    assert Decimal(pnl["fees"]) == snap.fees
    assert Decimal(pnl["equity"]) == snap.equity
    for key in [
        "date",
        "startEquity",
        "equity",
        "realized",
        "unrealized",
        "fees",
        "percent",
        "dailyTargetPct",
        "dailyLossLimitPct",
        "halted",
        "haltReason",
    ]:
        assert key in pnl


def test_bad_input_gets_clear_errors(system) -> None:
    with system.client() as c:
        r = c.post("/orchestrate/run", content=b"{not json", headers={"X-Request-Id": "bad-json-1"})
        # served ahead of FastAPI's stack (web.Routes): the same JSON errors and request ids
        assert r.status_code == 400 and r.json()["error"] == "malformed JSON body"
        assert r.headers["x-request-id"] == "bad-json-1"
        r = c.post("/orchestrate/run", json={"symbol": "BTC-USD", "side": "buy", "notional": -5})
        assert r.status_code == 422 and "notional" in r.json()["error"]
        assert r.json()["fields"][0]["field"] == "notional"
        metrics = c.get("/metrics").text
        assert 'http_requests_total{method="POST",route="/orchestrate/run",status="422"}' in metrics
        r = c.post("/orchestrate/run", json={"symbol": "DOGE-XYZ", "side": "buy", "notional": 5}, headers=system.admin)
        assert r.status_code == 400 and "unknown symbol" in r.json()["error"]
        assert c.get("/orchestrate/run/nope").status_code == 404


def test_ctrl_c_stops_everything(system) -> None:
    pids = list(json.loads((system.data_dir / "runtime.json").read_text())["agents"].values())
    assert len(pids) == len(AGENT_PORTS)
    started = time.monotonic()
    assert system.stop() == 0
    assert time.monotonic() - started < 15
    for pid in pids:
        try:
            os.kill(pid, 0)
            raise AssertionError(f"agent process {pid} still running")
        except ProcessLookupError:
            pass
