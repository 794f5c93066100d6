"""End-to-end fixtures: start `cli-trading up` as a user does, in a temporary data folder, on a
block of ports reserved for it (tests/support/ports.py), and stop it with Ctrl-C (SIGINT)
afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cli_trading.contracts import AGENT_PORTS
from tests.support import ports

TOKEN = "e2e-admin-token-0123456789abcdef0123"


@dataclass
class System:
    data_dir: Path
    port_base: int
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    token: str = TOKEN

    def url(self, agent: str = "orchestrator") -> str:
        return f"http://127.0.0.1:{self.port_base + AGENT_PORTS[agent] - 7001}"

    @property
    def admin(self) -> dict[str, str]:
        return {"X-Admin-Token": self.token}

    def client(self, agent: str = "orchestrator") -> httpx.Client:
        return httpx.Client(base_url=self.url(agent), timeout=10)

    def output(self) -> str:
        return (self.data_dir / "up.out").read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def wait_healthy(sys_: System, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sys_.proc.poll() is not None:
            raise AssertionError(f"cli-trading up exited early:\n{sys_.output()[-3000:]}")
        ok = 0
        for agent in AGENT_PORTS:
            with contextlib.suppress(httpx.HTTPError):
                ok += httpx.get(sys_.url(agent) + "/health", timeout=1).status_code == 200
        if ok == len(AGENT_PORTS):
            return
        time.sleep(0.5)
    raise AssertionError(f"agents not healthy after {timeout}s:\n{sys_.output()[-3000:]}")


def _port_free(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
        return False
    except httpx.HTTPError:
        return True


def start_system(
    tmp: Path,
    *,
    port_base: int | None = None,
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
    data_dir: Path | None = None,
) -> System:
    """`cli-trading up` in `tmp`, on `port_base` (a restart on the ports of a stopped system) or
    on a block of free ports reserved for it until the test session ends (a restart of the same
    system takes `port_base=s.port_base`)."""
    if port_base is None:
        port_base = ports.reserve(10)
    assert _port_free(port_base), f"port {port_base} is taken: another system is still running there"
    data = data_dir or tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "ADMIN_TOKEN_FILE")}
    # replayed markets move fast: keep the automatic PnL halts out of tests that are not about them
    # (those set their limits through POST /admin/pnl/limits)
    env.update(
        {
            "ADMIN_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
            "DAILY_TARGET_PCT": "500",
            "DAILY_LOSS_LIMIT_PCT": "90",
            **(extra_env or {}),
        }
    )
    out = open(data / "up.out", "ab")  # noqa: SIM115 - handed to the child
    cmd = [
        sys.executable,
        "-m",
        "cli_trading",
        "up",
        "--data-dir",
        str(data),
        "--port-base",
        str(port_base),
        "--speed",
        "50",
        *(args or []),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s = System(data, port_base, proc, env)
    try:
        wait_healthy(s)
    except BaseException:
        s.stop()
        raise
    return s


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """A fresh system on embedded Redis and SQLite."""
    s = start_system(tmp_path)
    yield s
    s.stop()
