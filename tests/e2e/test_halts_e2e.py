"""Halts as the runbook uses them, end to end against `cli-trading up`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import TOKEN, System, start_system
from tests.e2e.runbook import commands, run

pytestmark = pytest.mark.e2e


def until(fn, timeout: float = 30, every: float = 0.2):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def pnl(s: System) -> dict:
    return httpx.get(s.url() + "/pnl/status", timeout=5).json()


def order(s: System, side: str = "buy", notional: float = 100) -> httpx.Response:
    return httpx.post(
        s.url() + "/orchestrate/run", json={"symbol": "BTC-USD", "side": side, "notional": notional}, headers=s.admin
    )


def filled(s: System, rid: str) -> bool:
    return httpx.get(f"{s.url()}/orchestrate/run/{rid}").json()["outcome"] == "filled"


def candles(folder: Path, start: float, step_pct: float, n: int = 400) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows, price = ["ts,open,high,low,close,volume"], start
    for i in range(n):
        nxt = price * (1 + step_pct / 100)
        lo, hi = min(price, nxt), max(price, nxt)
        # minute bars: the replay's trading day is the market day, so the whole file is one day
        # (the limits a test sets for the day stay set)
        rows.append(f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z,{price:.2f},{hi:.2f},{lo:.2f},{nxt:.2f},1")
        price = nxt
    (folder / "BTC-USD_1m.csv").write_text("\n".join(rows) + "\n")
    return folder


def quiet_strategies(folder: Path) -> Path:
    """A config folder whose strategy never signals: the only fills are the test's own orders
    (automatic runs on a steady trend would reach the test's limits first, by a race)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "strategies.yaml").write_text(
        "strategies:\n  - name: trend\n    params: {min_spread_pct: 50, full_confidence_spread_pct: 100}\n"
    )
    return folder


def test_runbook_halt_procedure_as_written(system: System) -> None:
    port = system.port_base
    halts = commands("/admin/orchestrate/halt")
    assert any("security_incident" in c for c in halts) and any("emergency_stop" in c for c in halts)
    [check_reason] = [c for c in commands("/pnl/status") if "haltReason" in c]
    [unhalt] = commands("/admin/orchestrate/unhalt")
    for cmd in halts:
        reason = json.loads(cmd.split("-d '", 1)[1].rstrip("'"))["reason"]
        body = json.loads(run(cmd, port=port, token=TOKEN))
        assert body["halted"] is True and body["haltReason"] == reason
        assert run(check_reason, port=port, token=TOKEN).strip() == f'"{reason}"'
        metrics = httpx.get(system.url() + "/metrics").text
        assert "trading_system_halted 1.0" in metrics
        assert f'trading_halt_info{{mode="halt",reason="{reason}"}} 1.0' in metrics
        assert order(system).status_code == 409
        assert json.loads(run(unhalt, port=port, token=TOKEN))["halted"] is False
    # no body means manual; a note and a mode are kept; no token is 401
    r = httpx.post(system.url() + "/admin/orchestrate/halt", headers=system.admin)
    assert r.json()["haltReason"] == "manual"
    assert httpx.post(system.url() + "/admin/orchestrate/unhalt").status_code == 401
    assert httpx.post(system.url() + "/admin/orchestrate/halt", headers={"X-Admin-Token": "wrong"}).status_code == 401
    ledger = httpx.get(system.url() + "/admin/halts", headers=system.admin).json()["events"]
    assert [e["action"] for e in ledger[:2]] == ["halt", "unhalt"]
    assert all(e["actor"].startswith("tok:") and e["source"] == "127.0.0.1" for e in ledger)
    assert TOKEN not in json.dumps(ledger)
    recent = httpx.get(system.url("notification-manager") + "/notify/recent").json()
    kinds = {(e["type"], e["severity"]) for e in recent["events"]}
    assert ("halt.security_incident", "critical") in kinds and ("halt.manual", "warning") in kinds


@pytest.fixture
def quiet_system(tmp_path: Path) -> Iterator[System]:
    """Only the test's own orders trade: no strategy order is in flight at a flatten halt (the
    flatten test failed by chance on one) or moves a position behind the test's back."""
    s = start_system(tmp_path, args=["--config", str(quiet_strategies(tmp_path / "config"))])
    yield s
    s.stop()


def test_flatten_closes_positions_then_stays_halted(quiet_system: System) -> None:
    system = quiet_system
    rid = order(system, notional=300).json()["requestId"]
    until(lambda: filled(system, rid))
    held = until(lambda: [p for p in pnl(system)["positions"] if p["symbol"] == "BTC-USD"])
    r = httpx.post(
        system.url() + "/admin/orchestrate/halt",
        headers=system.admin,
        json={"reason": "emergency_stop", "mode": "flatten", "note": "close everything"},
    )
    # the closing orders may leave after the answer: flatten keeps closing what is open
    assert r.status_code == 200 and r.json()["haltMode"] == "flatten", (r.text, held)
    until(lambda: not pnl(system)["positions"])
    p = pnl(system)
    assert p["halted"] and p["haltMode"] == "flatten"
    assert order(system, "buy").status_code == 409  # buys stay refused


def test_target_reached_from_real_fills(tmp_path: Path) -> None:
    data = candles(tmp_path / "candles", 100.0, 0.5)
    s = start_system(
        tmp_path,

        extra_env={"MARKET_DATA_DIR": str(data), "SYMBOLS": "BTC-USD"},
        args=["--speed", "5", "--config", str(quiet_strategies(tmp_path / "config"))],
    )
    try:
        httpx.post(
            s.url() + "/admin/pnl/limits", headers=s.admin, json={"dailyTargetPct": 0.2, "dailyLossLimitPct": 20}
        )
        rid = order(s, notional=2000).json()["requestId"]
        until(lambda: filled(s, rid))
        p = until(lambda: (q := pnl(s))["halted"] and q)
        assert p["haltReason"] == "daily_target_reached" and float(p["percent"]) >= 0.2
        assert order(s).status_code == 409
        events = httpx.get(s.url("notification-manager") + "/notify/recent").json()["events"]
        assert any(e["type"] == "halt.daily_target_reached" and e["severity"] == "info" for e in events)
    finally:
        s.stop()


def test_loss_limit_from_real_fills_refuses_plain_unhalt(tmp_path: Path) -> None:
    data = candles(tmp_path / "candles", 100.0, -0.5)
    s = start_system(
        tmp_path,

        extra_env={"MARKET_DATA_DIR": str(data), "SYMBOLS": "BTC-USD"},
        args=["--speed", "5", "--config", str(quiet_strategies(tmp_path / "config"))],
    )
    try:
        httpx.post(
            s.url() + "/admin/pnl/limits", headers=s.admin, json={"dailyTargetPct": 50, "dailyLossLimitPct": 0.2}
        )
        rid = order(s, notional=2000).json()["requestId"]
        until(lambda: filled(s, rid))
        p = until(lambda: (q := pnl(s))["halted"] and q)
        assert p["haltReason"] == "daily_loss_limit" and float(p["percent"]) <= -0.2
        r = httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin)
        assert r.status_code == 409 and "loss limit" in r.json()["error"]
        r = httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin, json={"force": True, "note": "accepted"})
        assert r.status_code == 200 and r.json()["halted"] is False
        events = httpx.get(s.url() + "/admin/halts", headers=s.admin).json()["events"]
        assert events[0]["action"] == "unhalt" and events[0]["detail"]["force"] is True, events[:3]
    finally:
        s.stop()


def test_halt_survives_redis_flush_and_restart(tmp_path: Path, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    env = {"REDIS_URL": redis_url}
    s = start_system(tmp_path, extra_env=env)
    try:
        rid = order(s, notional=100).json()["requestId"]
        until(lambda: filled(s, rid))
        httpx.post(s.url() + "/admin/orchestrate/halt", headers=s.admin, content=b'{"reason":"emergency_stop"}')
        r.flushdb()  # Redis loses everything: streams, groups, the live halt flag
        until(lambda: r.hget("cli-trading:halt", "halted") == b"1", timeout=10)
        assert pnl(s)["haltReason"] == "emergency_stop"
        assert order(s).status_code == 409
        # the executor refuses on its own too: an order injected straight into exec.orders
        before = httpx.get(s.url("trade-executor") + "/admin/exec/adapter", headers=s.admin).json()["count"]
        r.xadd(
            "exec.orders",
            {
                "data": json.dumps(
                    {
                        "orderId": "ord-injected",
                        "requestId": "injected",
                        "symbol": "BTC-USD",
                        "side": "buy",
                        "qty": "0.001",
                        "price": "100",
                    }
                )
            },
        )
        status = until(
            lambda: [json.loads(f[b"data"]) for _, f in r.xrange("exec.status") if b"ord-injected" in f[b"data"]]
        )
        assert status[0]["status"] == "rejected" and status[0]["reason"] == "halted"
        assert httpx.get(s.url("trade-executor") + "/admin/exec/adapter", headers=s.admin).json()["count"] == before
    finally:
        s.stop()
    s = start_system(tmp_path, port_base=s.port_base, extra_env=env)  # same data folder: a full restart
    try:
        p = pnl(s)
        assert p["halted"] and p["haltReason"] == "emergency_stop"
        assert order(s).status_code == 409
        assert httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin).status_code == 200
        rid = order(s, notional=50).json()["requestId"]
        until(lambda: filled(s, rid))
    finally:
        s.stop()
        r.flushdb()


def test_system_error_halts(tmp_path: Path, redis_url: str) -> None:
    """system_error: consecutive execution failures, and a dead-lettered exec.status message."""
    r = redis.Redis.from_url(redis_url)
    s = start_system(tmp_path, extra_env={"REDIS_URL": redis_url, "EXEC_FAILURE_HALT_N": "3"})
    try:
        for i in range(3):
            failed = {
                "orderId": f"ord-f{i}",
                "requestId": f"f{i}",
                "status": "failed",
                "symbol": "BTC-USD",
                "side": "buy",
                "qty": "0.001",
                "reason": "exchange unreachable",
            }
            r.xadd("exec.status", {"data": json.dumps(failed)})
        p = until(lambda: (q := pnl(s))["halted"] and q)
        assert p["haltReason"] == "system_error" and "3 consecutive execution failures" in p["haltNote"]
        httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin)
        assert pnl(s)["halted"] is False
        r.xadd("exec.status", {"data": b"\x00 not json"})  # dead-lettered at once by its consumers
        p = until(lambda: (q := pnl(s))["halted"] and q)
        assert p["haltReason"] == "system_error" and "exec.status.dlq" in p["haltNote"]
    finally:
        s.stop()
        r.flushdb()
