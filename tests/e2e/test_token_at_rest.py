"""The admin token is never stored anywhere but its own file: after a session with orders,
failed logins, a halt and a token rotation, the token (old and new) is in no file of the data
folder (logs, SQLite database with its WAL, Redis' append-only file, console output), in no
Redis key or stream, and in no row of any PostgreSQL table."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.e2e.conftest import System, start_system
from tests.support import postgres

pytestmark = pytest.mark.e2e
OLD = "at-rest-old-token-" + uuid.uuid4().hex
NEW = "at-rest-new-token-" + uuid.uuid4().hex


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with postgres.database("ct_at_rest") as url:
        yield url


async def _pg(sql: str, url: str) -> list[asyncpg.Record]:
    return await postgres.fetch(url, sql)


def session(s: System, token_file: Path) -> None:
    with httpx.Client(base_url=s.url(), timeout=10) as c:
        order = {"symbol": "BTC-USD", "side": "buy", "notional": 50}
        assert c.post("/orchestrate/run", json=order, headers={"X-Admin-Token": OLD}).status_code == 202
        for bad in (OLD[:-1], "x" + NEW):  # near misses are logged as failures: never their text
            assert c.get("/admin/halts", headers={"X-Admin-Token": bad}).status_code == 401
        # rotation with a grace period: the new token at once, the old one until validUntil
        until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        Path(f"{token_file}.previous").write_text(json.dumps({"token": OLD, "validUntil": until}))
        token_file.write_text(NEW + "\n")
        assert c.get("/admin/halts", headers={"X-Admin-Token": NEW}).status_code == 200
        assert c.get("/admin/halts", headers={"X-Admin-Token": OLD}).status_code == 200
        r = c.post("/admin/orchestrate/halt", headers={"X-Admin-Token": NEW}, json={"reason": "manual", "note": "x"})
        assert r.status_code == 200
        assert c.post("/admin/orchestrate/unhalt", headers={"X-Admin-Token": OLD}).status_code == 200
        assert c.post("/orchestrate/run", json=order, headers={"X-Admin-Token": NEW}).status_code == 202
        c.get("/admin/audit", headers={"X-Admin-Token": NEW})  # flushes the audit buffer


def redis_values(r: redis.Redis) -> Iterator[tuple[str, bytes]]:
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        if kind == "string":
            yield key.decode(), r.get(key) or b""
        elif kind == "hash":
            yield key.decode(), b" ".join(k + b"=" + v for k, v in r.hgetall(key).items())
        elif kind == "stream":
            yield key.decode(), b" ".join(v for _, f in r.xrange(key) for v in f.values())
        elif kind == "set":
            yield key.decode(), b" ".join(r.smembers(key))
        elif kind == "list":
            yield key.decode(), b" ".join(r.lrange(key, 0, -1))
        elif kind == "zset":
            yield key.decode(), b" ".join(m for m, _ in r.zrange(key, 0, -1, withscores=True))
        yield key.decode(), key  # the key's name too


def test_the_token_is_stored_nowhere_but_its_file(tmp_path: Path, backend: str | None) -> None:
    token_file = tmp_path / "secret" / "admin_token"
    token_file.parent.mkdir()
    token_file.write_text(OLD + "\n")
    env = {"ADMIN_TOKEN_FILE": str(token_file), "ADMIN_TOKEN": ""}
    if backend:
        env["DATABASE_URL"] = backend
    s = start_system(tmp_path, extra_env=env)
    stopped = False
    try:
        session(s, token_file)
        r = redis.Redis.from_url(json.loads((s.data_dir / "runtime.json").read_text())["redisUrl"])
        values = list(redis_values(r))
        assert any(k == "exec.status" for k, _ in values), "the scan saw no stream: it proves nothing"
        for key, value in values:
            for tok in (OLD, NEW):
                assert tok.encode() not in value, f"the token is in Redis key {key}"
        if backend:
            tables = [
                t["table_name"]
                for t in asyncio.run(
                    _pg("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'", backend)
                )
            ]
            assert {"runs", "fills", "audit_events"} <= set(tables)
            for table in tables:
                rows = asyncio.run(_pg(f'SELECT t::text AS row FROM "{table}" t', backend))
                text = "\n".join(row["row"] for row in rows)
                assert OLD not in text and NEW not in text, f"the token is in table {table}"
            assert asyncio.run(_pg("SELECT count(*) AS n FROM audit_events", backend))[0]["n"] > 0
        running = scan_files(s.data_dir)  # while running: the SQLite WAL is there
        if not backend:
            assert "trading.db-wal" in running, sorted(running)
        stopped = s.stop() == 0
    finally:
        if not stopped:
            s.stop()
    names = scan_files(s.data_dir)  # after the stop: the logs' last lines, the database checkpointed
    assert any(n.endswith(".log") for n in names), names
    if not backend:
        assert "trading.db" in names


def scan_files(data_dir: Path) -> set[str]:
    files = [f for f in data_dir.rglob("*") if f.is_file()]
    assert any(f.parent.name == "redis" for f in files), "no Redis data to scan"
    for f in files:
        data = f.read_bytes()
        for tok in (OLD, NEW):
            assert tok.encode() not in data, f"the token is in {f.relative_to(data_dir)}"
    return {f.name for f in files}
