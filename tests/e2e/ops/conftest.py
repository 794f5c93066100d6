"""Ops fixtures: ONE running system for the whole ops suite (start-up is the slow part), on the
real PostgreSQL (a database of its own) and a real Redis (a database of its own on the session's
private redis-server), on a block of allocated ports, with the
admin token in a file (ADMIN_TOKEN_FILE) so that rotation can be tested without restarts.

The daily target, loss limit and risk limits are set out of reach and automatic signals are
rejected by risk (min_confidence 1.0), so that only the tests' own orders trade."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_trading.ops import secrets as sec
from tests.e2e.conftest import System, start_system
from tests.support import postgres
from tests.support.postgres import fetch as pg_fetch
from tests.support.redis_server import PrivateRedis

ROOT = Path(__file__).resolve().parents[3]
# Only the tests' manual orders fill (automatic signals never reach confidence 1), and no limit
# is reached however long the session runs.
RISK_YAML = """risk:
  min_confidence: 1.0
  max_order_notional: 100000
  max_position_notional: 10000000
  max_total_exposure: 10000000
"""


@dataclass
class Ops:
    system: System
    pg_url: str
    redis_url: str
    token_file: Path
    secrets_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.system.data_dir

    def url(self, agent: str = "orchestrator") -> str:
        return self.system.url(agent)

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def admin(self, token: str | None = None) -> dict[str, str]:
        return {"X-Admin-Token": token or self.token()}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "SECRETS_DIR")}
        env.update({
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "DATA_DIR": str(self.data_dir), "PORT_BASE": str(self.system.port_base), "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.pg_url, "ADMIN_TOKEN_FILE": str(self.token_file),
            "ADMIN_TOKEN_GRACE_S": "120", **extra,
        })
        return env

    def script(self, name: str, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "scripts" / f"{name}.sh"), *args], cwd=self.data_dir.parent,
                              env=self.env(**env), capture_output=True, text=True, timeout=timeout, check=False)

    def json_script(self, name: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
        p = self.script(name, *args, "--json", **env)
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError as exc:
            raise AssertionError(f"{name} {args}: no JSON (rc={p.returncode}):\n{p.stdout}\n{p.stderr}") from exc

    def fills(self) -> list[str]:
        rows = asyncio.run(pg_fetch(self.pg_url, "SELECT order_id FROM fills ORDER BY id"))
        return [r["order_id"] for r in rows]

    def pnl(self) -> dict[str, Any]:
        return httpx.get(self.url() + "/pnl/status", timeout=10).json()

    def halt(self, reason: str = "manual") -> None:
        r = httpx.post(self.url() + "/admin/orchestrate/halt", headers=self.admin(), json={"reason": reason},
                       timeout=10)
        assert r.status_code == 200, r.text

    def unhalt(self) -> None:
        r = httpx.post(self.url() + "/admin/orchestrate/unhalt", headers=self.admin(), json={"force": True},
                       timeout=10)
        assert r.status_code == 200, r.text

    def trade(self, side: str = "buy", notional: int = 50, timeout: float = 30) -> dict[str, Any]:
        """A manual order through the whole pipeline; returns the finished run."""
        deadline = time.monotonic() + timeout
        while True:
            r = httpx.post(self.url() + "/orchestrate/run", timeout=10,
                           json={"symbol": "BTC-USD", "side": side, "notional": notional}, headers=self.admin())
            if r.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # no market price yet right after start
        assert r.status_code == 202, r.text
        rid = r.json()["requestId"]
        while time.monotonic() < deadline:
            run = httpx.get(f"{self.url()}/orchestrate/run/{rid}", timeout=10).json()
            if run.get("outcome"):
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {rid} did not finish")


@pytest.fixture(scope="session")
def ops(tmp_path_factory: pytest.TempPathFactory, private_redis: PrivateRedis) -> Iterator[Ops]:
    redis_url = private_redis.fresh_db()
    with postgres.database("ct_ops") as pg_url:
        tmp = tmp_path_factory.mktemp("ops")
        secrets_dir = tmp / "secrets"
        sec.init(secrets_dir)
        token_file = secrets_dir / "admin_token"
        extra = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "ADMIN_TOKEN": "", "ADMIN_TOKEN_FILE": str(token_file),
                 "ADMIN_TOKEN_GRACE_S": "120", "DAILY_TARGET_PCT": "1000", "DAILY_LOSS_LIMIT_PCT": "99",
                 "AUTH_FAIL_LIMIT": "1000", "AUTH_SPIKE_THRESHOLD": "1000", "STARTING_CASH": "1000000"}
        config = tmp / "config"
        config.mkdir()
        (config / "risk.yaml").write_text(RISK_YAML)
        system = start_system(tmp, extra_env=extra, args=["--config", str(config)])
        try:
            yield Ops(system, pg_url, redis_url, token_file, secrets_dir)
        finally:
            system.stop()
