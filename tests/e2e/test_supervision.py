"""`cli-trading up` as its supervisor: agents and the embedded Redis restarted after `kill -9`,
every agent healthy again and consuming, one `up` per data folder, nothing left behind when `up`
itself is killed, and a clean takeover by the next `up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli_trading.contracts import AGENT_PORTS
from cli_trading.uplock import pid_alive
from tests.e2e.conftest import System, start_system
from tests.e2e.test_halts_e2e import quiet_strategies
from tests.support import ports

pytestmark = pytest.mark.e2e


def runtime(s: System) -> dict:
    return json.loads((s.data_dir / "runtime.json").read_text())


def until(cond, timeout: float, what: str) -> float:  # noqa: ANN001 - a predicate
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def all_healthy(s: System) -> bool:
    for agent in AGENT_PORTS:
        try:
            if httpx.get(s.url(agent) + "/health", timeout=2).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


def filled(s: System) -> str:
    with s.client() as c:
        r = c.post("/orchestrate/run", content=b'{"symbol":"BTC-USD","side":"buy","notional":100}', headers=s.admin)
        assert r.status_code == 202, r.text
        rid = r.json()["requestId"]

        def done() -> bool:
            run = c.get(f"/orchestrate/run/{rid}").json()
            return run.get("outcome") is not None

        until(done, 30, f"run {rid} reaches an outcome")
        run = c.get(f"/orchestrate/run/{rid}").json()
        assert run["outcome"] == "filled", run
    return rid


def test_up_restarts_agents_and_redis_refuses_a_second_up_and_dies_whole(tmp_path: Path) -> None:
    # strategies that never signal: their trades would use up the exposure limits on a slow
    # machine, and the test's orders be rejected for it (max_total_exposure)
    quiet = ["--config", str(quiet_strategies(tmp_path / "config"))]
    s = start_system(tmp_path, args=quiet)
    try:
        rid = filled(s)
        # a second `up` on the same folder refuses, naming the first
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli_trading",
                "up",
                "--data-dir",
                str(s.data_dir),
                "--port-base",
                str(ports.reserve(10)),
            ],
            env=s.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert "already running" in second.stderr and str(s.proc.pid) in second.stderr, second.stderr

        # kill -9 an agent: back, with a new pid, and the orchestrator's /health says it restarted
        old = runtime(s)["agents"]["risk-manager"]
        os.kill(old, signal.SIGKILL)
        until(lambda: runtime(s)["agents"]["risk-manager"] != old and all_healthy(s), 60, "risk-manager back")
        sup = httpx.get(s.url() + "/health", timeout=5).json()["checks"]["supervision"]
        assert sup["processes"]["risk-manager"]["restarts"] >= 1, sup
        assert 'supervised_process_restarts{process="risk-manager"} 1.0' in httpx.get(s.url() + "/metrics").text

        # kill -9 the embedded Redis: restarted on its data, every agent healthy and consuming again
        redis_pid = runtime(s)["redisPid"]
        os.kill(redis_pid, signal.SIGKILL)
        until(lambda: not all_healthy(s), 15, "agents notice Redis is gone")
        took = until(lambda: runtime(s)["redisPid"] != redis_pid and all_healthy(s), 90, "all healthy after Redis")
        print(f"recovered from kill -9 of the embedded Redis in {took:.1f}s")
        with s.client() as c:  # the run from before the crash is still there, and new runs flow
            assert c.get(f"/orchestrate/run/{rid}").json()["outcome"] == "filled"
        filled(s)

        # kill -9 `up` itself: every process it started ends by itself
        children = [*runtime(s)["agents"].values(), runtime(s)["redisPid"]]
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)
        until(lambda: not any(pid_alive(p) for p in children), 20, "agents and Redis end with up")
    finally:
        s.stop()
    # and a new `up` on the same folder takes over, with the old ledger and Redis data
    s2 = start_system(tmp_path, port_base=s.port_base, args=quiet)
    try:
        with s2.client() as c:
            assert c.get(f"/orchestrate/run/{rid}").json()["outcome"] == "filled"
        filled(s2)
    finally:
        assert s2.stop() == 0
