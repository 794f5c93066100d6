"""Dependencies missing at start and lost while running."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.ports import free_port, reserve

pytestmark = pytest.mark.e2e


def agent_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"DATA_DIR": str(tmp), "ADMIN_TOKEN": "resilience-token-0123456789", **extra})
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli_trading", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_redis_at_start_is_a_clear_error(tmp_path: Path) -> None:
    dead, base = f"redis://127.0.0.1:{free_port()}/0", str(reserve(10))
    res = run_cli(["agent", "risk-manager"], agent_env(tmp_path, REDIS_URL=dead, PORT_BASE=base))
    assert res.returncode == 2 and "Redis is not reachable" in res.stderr and "REDIS_URL" in res.stderr
    res = run_cli(["up", "--data-dir", str(tmp_path), "--port-base", base], agent_env(tmp_path, REDIS_URL=dead))
    assert res.returncode == 2 and "Redis is not reachable" in res.stderr


def test_missing_database_at_start_is_a_clear_error(tmp_path: Path, redis_url: str) -> None:
    dead_pg = f"postgresql://trader:secret-pass@127.0.0.1:{free_port()}/trading"
    env = agent_env(tmp_path, REDIS_URL=redis_url, DATABASE_URL=dead_pg, PORT_BASE=str(reserve(10)))
    res = run_cli(["agent", "risk-manager"], env)
    assert res.returncode == 2 and "database not usable" in res.stderr and "DATABASE_URL" in res.stderr
    assert "secret-pass" not in res.stderr  # the password is redacted
    res = run_cli(["agent", "no-such-agent"], env)
    assert res.returncode == 2 and "unknown agent" in res.stderr


def test_redis_lost_while_running_then_back(tmp_path: Path) -> None:
    port = free_port()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    server = [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(rdir),
        "--appendonly",
        "yes",
        "--save",
        "",
    ]
    rs = subprocess.Popen(server, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    for _ in range(50):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    base = reserve(10)
    env = agent_env(tmp_path, REDIS_URL=url, PORT_BASE=str(base))
    agent = subprocess.Popen(
        [sys.executable, "-m", "cli_trading", "agent", "portfolio-manager"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    health = f"http://127.0.0.1:{base + 1}/health"  # the portfolio manager's port

    def status() -> int:
        try:
            return httpx.get(health, timeout=5).status_code
        except httpx.HTTPError:
            return 0

    def wait_for(code: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and status() != code:
            time.sleep(0.3)
        assert status() == code

    def mark() -> Decimal | None:
        """The portfolio's saved mark for BTC-USD: the effect of the bars it consumed."""
        db = tmp_path / "trading.db"
        if not db.exists():
            return None
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute("SELECT price FROM marks WHERE symbol = 'BTC-USD'").fetchone()
        return Decimal(str(row[0])) if row else None

    try:
        wait_for(200)
        r.xadd(
            "market.bars",
            {"data": b'{"symbol":"BTC-USD","barTs":"x","open":"1","high":"1","low":"1","close":"101","volume":"1"}'},
        )
        rs.send_signal(signal.SIGTERM)  # Redis goes away
        rs.wait(10)
        wait_for(503)
        body = httpx.get(health).json()
        assert body["checks"]["redis"]["ok"] is False
        rs = subprocess.Popen(server, stdout=subprocess.DEVNULL)  # and comes back, with its AOF
        wait_for(200, timeout=60)
        r.xadd(
            "market.bars",
            {"data": b'{"symbol":"BTC-USD","barTs":"y","open":"1","high":"1","low":"1","close":"102","volume":"1"}'},
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pending = r.xpending("market.bars", "portfolio")["pending"]
            info = r.xinfo_groups("market.bars")
            if info and info[0]["lag"] == 0 and pending == 0 and mark() == Decimal("102"):
                break
            time.sleep(0.3)
        assert r.xinfo_groups("market.bars")[0]["lag"] == 0, "messages published around the outage were not consumed"
        assert r.xpending("market.bars", "portfolio")["pending"] == 0, "a message was left pending"
        assert mark() == Decimal("102"), "the last bar's effect (the saved mark) is missing"
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        rs.terminate()
        rs.wait(10)
