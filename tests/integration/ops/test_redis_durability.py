"""The durability warnings against real redis-servers: one without an append-only file and with
an evicting policy, one configured as the embedded Redis is."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli_trading.embedded_redis import EmbeddedRedis, free_port
from cli_trading.ops import redisdurable
from cli_trading.ops.security import durability_findings


@pytest.fixture
def careless_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
         str(tmp_path), "--appendonly", "no", "--save", "", "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def test_no_aof_and_eviction_are_warnings_naming_the_risk_and_the_fix(careless_redis: str) -> None:
    findings = {f.id: f for f in durability_findings(careless_redis)}
    assert set(findings) == {"redis-no-aof", "redis-evicts"}
    no_aof, evicts = findings["redis-no-aof"], findings["redis-evicts"]
    assert no_aof.severity == evicts.severity == "medium"  # a warning: exit code 1 of the audit
    assert "stream" in no_aof.detail and "appendonly yes" in no_aof.fix
    assert "allkeys-lru" in evicts.detail and "noeviction" in evicts.fix
    assert no_aof.evidence["appendonly"] == "no"


def test_the_embedded_redis_is_durable(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert durability_findings(url) == []
        risks, evidence = redisdurable.inspect(redis.Redis.from_url(url))
        assert risks == [] and evidence == {"appendonly": "yes", "maxmemoryPolicy": "noeviction",
                                            "appendfsync": "everysec"}
    finally:
        server.stop()
