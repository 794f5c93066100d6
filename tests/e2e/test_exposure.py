"""Exposure settings of one agent: the admin allow-list (403) and agents serving TLS themselves."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from cli_trading.ops import tls

pytestmark = pytest.mark.e2e
TOKEN = "exposure-token-0123456789abcdef"


def start_orchestrator(tmp: Path, port: int, redis_url: str, **env: str) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADMIN_TOKEN_FILE")}
    full.update({"DATA_DIR": str(tmp), "REDIS_URL": redis_url, "ADMIN_TOKEN": TOKEN, "PORT_BASE": str(port), **env})
    return subprocess.Popen(
        [sys.executable, "-m", "cli_trading", "agent", "orchestrator"],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_up(url: str, **kw: object) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2, **kw).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0


def test_allow_list_refuses_a_valid_token_from_elsewhere(tmp_path: Path, free_port: int, redis_url: str) -> None:
    p = start_orchestrator(tmp_path, free_port, redis_url, ADMIN_ALLOW_CIDRS="10.0.0.0/8")
    try:
        wait_up(f"http://127.0.0.1:{free_port}")
        r = httpx.get(f"http://127.0.0.1:{free_port}/admin/halts", headers={"X-Admin-Token": TOKEN})
        assert r.status_code == 403 and "allow-list" in r.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{free_port}/admin/halts").status_code == 401
    finally:
        stop(p)


def test_agents_serve_tls_themselves(tmp_path: Path, free_port: int, redis_url: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.self_signed(cert, key, hosts=["127.0.0.1"], days=1)
    p = start_orchestrator(tmp_path, free_port, redis_url, TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        wait_up(f"https://127.0.0.1:{free_port}", verify=trust)
        r = httpx.get(f"https://127.0.0.1:{free_port}/admin/halts", headers={"X-Admin-Token": TOKEN}, verify=trust)
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{free_port}/health", timeout=3)  # no plain HTTP on the TLS port
    finally:
        stop(p)


def test_requeue_all(tmp_path: Path, free_port: int, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    for i in range(3):
        entry = {
            "originalStream": "opt.results",
            "group": "orchestrator",
            "id": f"{i}-1",
            "error": "x",
            "failures": 5,
            "ts": "2026-01-01T00:00:00Z",
            "payload": {"requestId": f"never-{i}", "bad": True},
        }
        r.xadd("opt.results.dlq", {"data": orjson.dumps(entry)})
    p = start_orchestrator(tmp_path, free_port, redis_url)
    try:
        wait_up(f"http://127.0.0.1:{free_port}")
        page = httpx.get(
            f"http://127.0.0.1:{free_port}/admin/streams/dlq",
            params={"stream": "opt.results.dlq", "count": 2},
            headers={"X-Admin-Token": TOKEN},
        ).json()
        assert len(page["entries"]) == 2 and page["next"] and page["length"] == 3
        rest = httpx.get(
            f"http://127.0.0.1:{free_port}/admin/streams/dlq",
            params={"stream": "opt.results.dlq", "start": page["next"]},
            headers={"X-Admin-Token": TOKEN},
        )
        assert len(rest.json()["entries"]) == 1
        res = httpx.post(
            f"http://127.0.0.1:{free_port}/admin/streams/dlq/requeue",
            headers={"X-Admin-Token": TOKEN},
            content=b'{"dlqStream":"opt.results.dlq","all":true}',
        )
        assert res.status_code == 200 and res.json()["count"] == 3
        payloads = [orjson.loads(f[b"data"]) for _, f in r.xrange("opt.results")]
        assert sorted(p["requestId"] for p in payloads)[:3] == ["never-0", "never-1", "never-2"]
    finally:
        stop(p)
        r.flushdb()
