"""The operator's console driven by Textual's pilot against a real `cli-trading up` (on a block
of ports from tests/support/ports.py): what the runbook does by curl shows on screen, and what the
console does is what the runbook would have done (same endpoints, audited with the console
operator's fingerprint)."""

# ruff: noqa: ASYNC109, ASYNC210 - the tests' own short blocking calls (setup, checks) only pause the pilot's loop

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis

from cli_trading.auth import fingerprint
from cli_trading.cli.client import Target
from cli_trading.console.app import ConsoleApp
from cli_trading.console.client import ConsoleClient, Endpoint
from cli_trading.console.panels import Table
from tests.e2e.conftest import TOKEN, System, start_system
from tests.e2e.console_pilot import acknowledge, incident_listed, shows, until
from tests.e2e.runbook import commands, run
from tests.e2e.test_halts_e2e import candles
from tests.unit.console.screen import screen_text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("console")
    data = candles(tmp / "candles", 100.0, -0.5)  # a falling market: the forced-unhalt test needs a loss
    s = start_system(tmp, extra_env={"MARKET_DATA_DIR": str(data), "SYMBOLS": "BTC-USD"}, args=["--speed", "5"])
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def trading_again(system: System) -> Iterator[None]:
    """Every test starts with trading on (a halt left by the one before is lifted)."""
    unhalt(system)
    yield
    unhalt(system)


def unhalt(s: System) -> None:
    with contextlib.suppress(httpx.HTTPError):  # after the orchestrator-kill test it may still be starting
        httpx.post(s.url() + "/admin/orchestrate/unhalt", headers=s.admin, json={"force": True, "note": "reset"})


def console_app(s: System, token: str = TOKEN, **kwargs: Any) -> ConsoleApp:
    target = Target(port_base=s.port_base, token=token)
    return ConsoleApp(ConsoleClient(Endpoint(target)), **kwargs)


@asynccontextmanager
async def running(app: ConsoleApp) -> AsyncIterator[Any]:
    async with app.run_test(size=(120, 40)) as pilot:
        await shows(app, "orchestrator")
        yield pilot


def halt_events(s: System) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = httpx.get(s.url() + "/admin/halts", headers=s.admin).json()["events"]
    return events


async def test_a_curl_halt_shows_within_a_second(system: System) -> None:
    app = console_app(system)
    async with running(app):
        await shows(app, "TRADING", "PAPER")
        [cmd] = [c for c in commands("/admin/orchestrate/halt") if "security_incident" in c][:1]
        run(cmd, port=system.port_base, token=TOKEN)
        took = await shows(app, "TRADING HALTED", "security_incident", timeout=1.0)
        assert took <= 1.0


async def test_a_halt_from_the_console_is_recorded_with_its_operator(system: System) -> None:
    app = console_app(system)
    async with running(app) as pilot:
        await pilot.press("h")
        await pilot.pause()
        app.screen.query_one("#custom").value = "console_drill"
        app.screen.query_one("#note").value = "from the console test"
        await pilot.click("#go")
        await shows(app, "Halt trading now?")
        await pilot.press("y")
        await shows(app, "TRADING HALTED", "console_drill", timeout=2.0)
    last = halt_events(system)[0]
    assert last["action"] == "halt" and last["reason"] == "console_drill"
    assert last["actor"] == fingerprint(TOKEN) and last["note"] == "from the console test"


async def test_read_only_refuses_to_halt(system: System) -> None:
    app = console_app(system, read_only=True)
    async with running(app) as pilot:
        footer = [line for line in screen_text(app).splitlines() if "quit" in line][-1]
        assert "halt" not in footer and "ack" not in footer, footer  # no action keys in the footer
        await pilot.press("h")
        await pilot.pause(0.5)
        assert not httpx.get(system.url() + "/pnl/status").json()["halted"]
        assert app.screen is app.screen_stack[0]  # no halt dialog opened


async def test_forced_unhalt_only_after_the_refusal_and_a_typed_reason(system: System) -> None:
    s = system
    httpx.post(s.url() + "/admin/pnl/limits", headers=s.admin, json={"dailyTargetPct": 50, "dailyLossLimitPct": 0.2})
    try:
        r = httpx.post(
            s.url() + "/orchestrate/run", headers=s.admin, json={"symbol": "BTC-USD", "side": "buy", "notional": 2000}
        )
        assert r.status_code == 202, r.text
        await until(lambda: httpx.get(s.url() + "/pnl/status").json()["haltReason"] == "daily_loss_limit", 60)
        app = console_app(s)
        async with running(app) as pilot:
            await shows(app, "TRADING HALTED", "daily_loss_limit")
            await pilot.press("u")
            await pilot.pause()
            force = app.screen.query_one("#force")
            assert force.has_class("hidden")  # nothing to force before the plain unhalt was refused
            await pilot.click("#go")
            await shows(app, "refused (409)", "loss limit")
            assert not force.has_class("hidden") and force.disabled  # offered, but not before a reason
            app.screen.query_one("#force-reason").value = "loss accepted by the desk"
            await pilot.pause()
            assert not force.disabled
            await pilot.click("#force")
            await shows(app, "TRADING", "PAPER", absent="HALTED", timeout=3.0)
        last = halt_events(s)[0]
        assert last["action"] == "unhalt" and last["detail"]["force"] is True
        assert "loss accepted by the desk" in last["note"] and last["actor"] == fingerprint(TOKEN)
    finally:
        limits = {"dailyTargetPct": 500, "dailyLossLimitPct": 90}
        httpx.post(s.url() + "/admin/pnl/limits", headers=s.admin, json=limits)


async def test_an_incident_acknowledged_from_the_console(system: System) -> None:
    nm = system.url("notification-manager")
    opened = httpx.post(
        nm + "/admin/incidents", headers=system.admin, json={"title": "Console drill incident", "severity": "P2"}
    ).json()
    app = console_app(system)
    key = str(opened["id"])
    async with running(app) as pilot:
        table = await incident_listed(app, key)
        # columns: #, P, ack, age, commander, title (the title takes what the narrow others leave)
        assert str(table.get_row(key)[5]) == "Console drill incident" and str(table.get_row(key)[2]) == "NO"
        await shows(app, "Console drill incident")  # whole on screen at 120x40
        await acknowledge(app, pilot, key=key, notifier_url=nm, commander="Ada")


def _redis(s: System) -> redis.Redis:
    runtime = json.loads((s.data_dir / "runtime.json").read_text())
    return redis.Redis.from_url(runtime["redisUrl"])


async def test_a_dlq_entry_requeued_from_the_console(system: System) -> None:
    r = _redis(system)
    message = {
        "type": "console.requeue",
        "severity": "info",
        "message": "requeued from the console",
        "context": {},
        "ts": "2026-11-30T03:00:00Z",
        "traceId": "console-requeue-trace",
    }
    dead = {
        "originalStream": "notify.events",
        "group": "notify",
        "id": "1-1",
        "payload": message,
        "error": "SMTP timeout (drill)",
        "failures": 5,
        "ts": "2026-11-30T03:00:01Z",
    }
    entry_id = r.xadd("notify.events.dlq", {"data": json.dumps(dead)}).decode()
    app = console_app(system)
    async with running(app) as pilot:
        table = app.query_one("#streams", Table)
        await until(lambda: "notify.events.dlq" in [str(k.value) for k in table.rows])
        table.focus()
        table.move_cursor(row=[str(k.value) for k in table.rows].index("notify.events.dlq"))
        await pilot.press("d")
        await shows(app, "SMTP timeout (drill)", "requeued from the console")  # the entry's error and payload
        await pilot.press("r")
        await shows(app, f"Requeue {entry_id}")
        await pilot.press("y")
        await shows(app, "requeued 1 message(s)")
    assert entry_id not in [e.decode() for e, _ in r.xrange("notify.events.dlq")]
    audit = httpx.get(system.url() + "/admin/audit", headers=system.admin, params={"action": "streams:requeue"})
    assert any(e["actor"] == fingerprint(TOKEN) for e in audit.json()["events"])


def _pid(s: System, agent: str) -> int:
    pid: int = httpx.get(s.url(agent) + "/status", timeout=5).json()["pid"]
    return pid


async def test_an_agent_killed_shows_down_then_back(system: System) -> None:
    app = console_app(system)
    async with running(app):
        await shows(app, "risk-manager")
        old = _pid(system, "risk-manager")
        os.kill(old, signal.SIGKILL)
        table = app.query_one("#agents", Table)

        def state() -> str:
            return str(table.get_row("risk-manager")[1])

        await until(lambda: state().startswith("DOWN"), 15)
        await until(lambda: state() == "healthy", 60)
        assert _pid(system, "risk-manager") != old
        assert str(table.get_row("risk-manager")[2]) != "0"  # the restart is counted


async def test_a_wrong_token_says_so_and_exits_1(system: System) -> None:
    app = console_app(system, token="wrong-token-0123456789abcdef0123456789")
    async with app.run_test(size=(120, 40)):
        await until(lambda: app.return_code is not None, 10)
    assert app.return_code == 1


async def test_the_orchestrator_unreachable_then_reconnected(system: System) -> None:
    app = console_app(system)
    async with running(app):
        os.kill(_pid(system, "orchestrator"), signal.SIGKILL)
        await shows(app, "ORCHESTRATOR UNREACHABLE", timeout=10)
        await shows(app, "TRADING", "PAPER", absent="UNREACHABLE", timeout=60)
