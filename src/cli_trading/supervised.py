"""The processes `cli-trading up` keeps alive: the seven agents and the embedded Redis. Each is
restarted with backoff (`supervision.Backoff`) and never abandoned; a crash loop is announced on
`notify.events`, and every process's state is published in Redis (`SUPERVISION_KEY`) for the
orchestrator's /health and metrics and `cli-trading status`. Children get the parent-death
signal, so none outlives `up`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import redis

from cli_trading.config import Settings
from cli_trading.contracts import AGENTS, Stream
from cli_trading.embedded_redis import EmbeddedRedis, UpError
from cli_trading.supervision import SUPERVISION_KEY, SUPERVISION_TTL_S, Backoff
from cli_trading.uplock import die_with_parent

REDIS = "redis"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        env: dict[str, str],
        *,
        agents: tuple[str, ...] = AGENTS,
        embedded: EmbeddedRedis | None = None,
        redis_url: str = "",
    ) -> None:
        self.settings, self.env = settings, env
        self.children = {n: Child(n) for n in agents}
        self.embedded = embedded
        self.redis_backoff = Backoff()
        self.stopping = False
        self.r = redis.Redis.from_url(redis_url or env["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
        self._last_publish = 0.0

    # -- agents ----------------------------------------------------------------------------
    def spawn(self, child: Child) -> None:
        out = open(self.settings.logs_path / f"{child.name}.out", "ab")  # noqa: SIM115 - handed to the child  # crash output only; JSON goes to .log
        child.proc = subprocess.Popen(  # noqa: S603 - argv of our own: this interpreter, an agent by name
            [sys.executable, "-m", "cli_trading", "agent", child.name],
            env={**self.env, "CONSUMER_NAME": f"{child.name}-1", "LOG_STDERR": "0"},
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only, no locks taken
        )
        out.close()
        child.backoff.started(time.monotonic())

    def start_all(self) -> None:
        for c in self.children.values():
            self.spawn(c)

    def check(self) -> list[str]:
        """Restart what exited, when its backoff is over; returns lines for the operator."""
        if self.stopping:
            return []
        now = time.monotonic()
        lines = self._check_redis(now)
        for c in self.children.values():
            lines += self._check_child(c, now)
        if now - self._last_publish >= 1.0:
            self.publish_state(now)
        return lines

    def _check_child(self, c: Child, now: float) -> list[str]:
        b = c.backoff
        if c.proc is not None and b.next_start is None:
            if c.proc.poll() is None:
                if b.stable(now) and b.loud:
                    b.loud = False
                    self.notify("info", f"{c.name} is running again after a crash loop", c.name, b)
                    return [f"[green]{c.name} stable again[/green]"]
                return []
            delay = b.exited(c.proc.returncode, now)
            line = f"[yellow]{c.name} exited with {b.last_exit}; restarting in {delay:.1f}s[/yellow]"
            if b.crash_loop and not b.loud:
                b.loud = True
                log = self.settings.logs_path / f"{c.name}.out"
                self.notify("critical", f"{c.name} keeps crashing (exit {b.last_exit}); see {log}", c.name, b)
                line = (
                    f"[red]{c.name} keeps crashing (exit {b.last_exit}, {b.failures} times in a row); "
                    f"still restarting (next in {delay:.1f}s). See {log}[/red]"
                )
            return [line]
        if b.due(now):
            b.restarts += 1
            self.spawn(c)
        return []

    # -- the embedded Redis ----------------------------------------------------------------
    def _check_redis(self, now: float) -> list[str]:
        e, b = self.embedded, self.redis_backoff
        if e is None:
            return []
        if b.next_start is None:
            if e.alive():
                b.stable(now)
                return []
            delay = b.exited(e.proc.returncode if e.proc else None, now)
            return [f"[red]embedded Redis exited with {b.last_exit}; restarting in {delay:.1f}s on its data[/red]"]
        if not b.due(now):
            return []
        b.restarts += 1
        try:
            e.start()
        except UpError as exc:
            b.started(now)
            b.exited(None, now)  # a run that ended at once: the next wait is longer
            return [f"[red]{exc}; trying again[/red]"]
        b.started(now)
        self.notify("critical", f"embedded Redis exited with {b.last_exit} and was restarted on its data", REDIS, b)
        return ["[green]embedded Redis restarted on its append-only file[/green]"]

    # -- what others see -------------------------------------------------------------------
    def report(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        procs = {n: {**c.backoff.report(now), "pid": c.pid} for n, c in self.children.items()}
        if self.embedded is not None:
            procs[REDIS] = {**self.redis_backoff.report(now), "pid": self.embedded.pid}
        return {
            "supervisorPid": os.getpid(),
            "at": datetime.now(UTC).isoformat(),
            "processes": procs,
            "crashLooping": sorted(n for n, p in procs.items() if p["crashLoop"]),
        }

    def publish_state(self, now: float) -> None:
        """In Redis for the orchestrator, and as `supervision.json` in the data folder."""
        self._last_publish = now
        report = self.report(now)
        with contextlib.suppress(OSError):
            tmp = self.settings.data_dir / "supervision.json.tmp"
            tmp.write_bytes(orjson.dumps(report["processes"]))
            tmp.replace(self.settings.data_dir / "supervision.json")
        # Redis down: the embedded one is being restarted, or the operator's is out
        with contextlib.suppress(redis.RedisError):
            self.r.set(SUPERVISION_KEY, orjson.dumps(report), ex=SUPERVISION_TTL_S)

    def notify(self, severity: str, message: str, process: str, b: Backoff) -> None:
        event = {
            "type": "system.crash_loop" if severity != "info" else "system.recovered",
            "severity": severity,
            "message": message,
            "context": {
                "agent": "supervisor",
                "process": process,
                "category": "infrastructure",
                "restarts": b.restarts,
                "lastExit": b.last_exit,
            },
            "ts": datetime.now(UTC).isoformat(),
            "traceId": f"supervisor-{os.getpid()}-{time.time_ns()}",
        }
        # Redis itself may be what crashed: the line on the console says it meanwhile
        with contextlib.suppress(redis.RedisError):
            self.r.xadd(Stream.NOTIFY, {"data": orjson.dumps(event)})

    # -- the end ---------------------------------------------------------------------------
    def stop_all(self, timeout: float = 6.0) -> None:
        self.stopping = True
        for c in self.children.values():
            if c.proc and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in self.children.values():
            if c.proc is None:
                continue
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        with contextlib.suppress(redis.RedisError):
            self.r.delete(SUPERVISION_KEY)

    def health(self) -> dict[str, str]:
        out = {}
        with httpx.Client(timeout=1.0) as http:
            for name, c in self.children.items():
                if c.backoff.next_start is not None:
                    out[name] = c.backoff.state(time.monotonic())
                    continue
                try:
                    r = http.get(f"http://127.0.0.1:{self.settings.port_of(name)}/health")
                    out[name] = "healthy" if r.status_code == 200 else f"unhealthy ({r.status_code})"
                except httpx.HTTPError:
                    out[name] = "down"
        return out
