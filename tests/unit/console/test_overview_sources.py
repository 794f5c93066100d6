"""The overview's parts that do not need a running orchestrator: log tails, agent probes over a
real socket, the background cache, activity items."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from cli_trading.config import Settings
from cli_trading.control import overview_sources as src
from cli_trading.control.overview import Cached, run_item
from cli_trading.control.runs import Run, RunBook
from cli_trading.halt.state import HaltState
from tests.support.ports import free_port


def write_log(folder: Path, agent: str, entries: list[dict[str, Any]], junk: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"agent": agent, **e}) for e in entries]
    (folder / f"{agent}.log").write_text(junk + "\n".join(lines) + "\n")


def test_logs_merged_newest_last_filtered_by_agent_and_level(tmp_path: Path) -> None:
    write_log(tmp_path, "orchestrator", [
        {"ts": "2026-11-30T03:00:01Z", "level": "info", "event": "started"},
        {"ts": "2026-11-30T03:00:05Z", "level": "error", "event": "db lost", "requestId": "r1"},
    ])
    write_log(tmp_path, "risk-manager", [{"ts": "2026-11-30T03:00:03Z", "level": "warning", "event": "slow"}],
              junk="not json\n")
    logs = src.read_logs(tmp_path)
    tail = src.merged_tail(logs, limit=10, agent=None, level=None)
    assert [e["event"] for e in tail] == ["started", "slow", "db lost"]
    assert '"requestId": "r1"' in tail[-1]["extra"]
    assert [e["event"] for e in src.merged_tail(logs, limit=10, agent=None, level="warning")] == ["slow", "db lost"]
    assert [e["event"] for e in src.merged_tail(logs, limit=10, agent="risk-manager", level=None)] == ["slow"]
    assert src.merged_tail(logs, limit=1, agent=None, level=None)[0]["event"] == "db lost"
    assert src.merged_tail(logs, limit=0, agent=None, level=None) == []
    err = src.last_error(logs["orchestrator"])
    assert err is not None and err["event"] == "db lost"
    assert src.last_error(logs["risk-manager"]) is None
    assert logs["trade-executor"] == []  # no file yet: nothing, not an error


def test_a_long_log_is_read_from_its_end_only(tmp_path: Path) -> None:
    entries = [{"ts": f"2026-11-30T03:{i // 60:02d}:{i % 60:02d}Z", "level": "info", "event": f"e{i}"}
               for i in range(3000)]
    write_log(tmp_path, "orchestrator", entries)
    got = src.read_logs(tmp_path)["orchestrator"]
    assert got[-1]["event"] == "e2999" and 50 < len(got) < 3000  # the cut first line is dropped, not garbled
    assert all(e["event"].startswith("e") for e in got)


@pytest.fixture
async def agent_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"healthy": True}

    async def health(_: web.Request) -> web.Response:
        ok = state["healthy"]
        body = {"status": "ok" if ok else "unavailable", "checks": {"redis": {"ok": ok}, "consumers": {"ok": True}}}
        return web.json_response(body, status=200 if ok else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"pid": 4242, "uptimeSeconds": 12.5})

    app = web.Application()
    app.add_routes([web.get("/health", health), web.get("/status", status)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_probe_healthy_unhealthy_and_down(agent_server: tuple[str, dict[str, Any]]) -> None:
    url, state = agent_server
    async with httpx.AsyncClient(timeout=2) as client:
        assert await src.probe_agent(client, url) == {"state": "healthy", "failing": [], "pid": 4242,
                                                      "uptimeSeconds": 12.5}
        state["healthy"] = False
        got = await src.probe_agent(client, url)
        assert got["state"] == "unhealthy" and got["failing"] == ["redis"]
        down = await src.probe_agent(client, f"http://127.0.0.1:{free_port()}")
        assert down["state"] == "down"


async def test_cached_waits_only_the_first_time_then_refreshes_in_the_background() -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    async def fetch() -> dict[str, int]:
        calls.append(1)
        if len(calls) > 1:
            await gate.wait()  # a slow source
        return {"n": len(calls)}

    c = Cached(0.0, fetch)
    assert await c.get() == {"n": 1}
    assert await asyncio.wait_for(c.get(), 0.5) == {"n": 1}  # stale value, at once, while it refreshes
    gate.set()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if c.value == {"n": 2}:
            break
    assert c.value == {"n": 2}


async def test_cached_shows_a_failing_source_as_its_error() -> None:
    async def broken() -> None:
        raise ConnectionError("redis gone")

    assert await Cached(1.0, broken).get() == {"error": "ConnectionError: redis gone"}


def test_run_items_name_what_happened() -> None:
    t = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    run = Run("r-1", "BTC-USD", t, side="buy", outcome="rejected", reason="max_position", finished_at=t)
    run.steps = ["risk", "rejected"]
    item = run_item(run)
    assert item["kind"] == "rejection" and item["id"] == "r-1"
    assert item["summary"] == "rejected buy BTC-USD: max_position"
    assert item["record"]["steps"] == ["risk", "rejected"]
    assert run_item(Run("r-2", "ETH-USD", t))["kind"] == "run"


class HangingRedis:
    """A Redis that accepted the connection and never answers (stopped, or a partition)."""

    def __getattr__(self, name: str) -> Any:
        async def never(*args: Any, **kwargs: Any) -> Any:
            await asyncio.Event().wait()

        return never


async def _no_checks() -> dict[str, dict[str, Any]]:
    return {}


async def test_a_hanging_redis_shows_as_an_error_not_as_its_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_trading.control import overview

    monkeypatch.setattr(overview, "REDIS_WAIT", 0.05)
    board = overview.Overview(
        settings=Settings(),
        redis=HangingRedis(),
        sessions=lambda: None,
        runs=RunBook(),
        clock=lambda: datetime.now(UTC),
        pnl=dict,
        halt_state=HaltState,
        health=_no_checks,
        process=dict,
    )
    streams = await asyncio.wait_for(board.streams.get(), 5)  # without the guard: forever
    assert isinstance(streams, dict) and streams["error"].startswith("TimeoutError")
