"""Supervision policy of `cli-trading up`, pure (no I/O, the clock is passed in): when to restart
a process that exited, and when its exits have become a crash loop worth telling people about.

A process is never abandoned while `up` runs: an agent whose database is down exits at start and
must come back by itself once the database does. Restarts wait 0.5 s, 1 s, 2 s, … up to
`cap_s`; a process that ran `stable_s` without exiting starts again from the shortest wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

CRASH_LOOP_AFTER = 3  # consecutive quick exits
# `up` publishes every process's state here each second; it expires when `up` is gone
SUPERVISION_KEY = "cli-trading:supervision"
SUPERVISION_TTL_S = 15


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 60.0
    failures: int = 0  # consecutive exits without a stable run between them
    started_at: float = 0.0
    next_start: float | None = None  # when to start again after an exit; None while running
    restarts: int = 0
    last_exit: int | None = None
    loud: bool = False  # a crash loop was announced and not yet declared over

    def started(self, now: float) -> None:
        self.started_at, self.next_start = now, None

    def exited(self, code: int | None, now: float) -> float:
        """Record an exit; returns the delay before the next start."""
        if now - self.started_at >= self.stable_s:
            self.failures = 0
        self.failures += 1
        self.last_exit = code
        delay = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        self.next_start = now + delay
        return delay

    def due(self, now: float) -> bool:
        return self.next_start is not None and now >= self.next_start

    @property
    def crash_loop(self) -> bool:
        return self.failures >= CRASH_LOOP_AFTER

    def stable(self, now: float) -> bool:
        """Running for `stable_s`: the exits before no longer count."""
        if self.next_start is None and now - self.started_at >= self.stable_s and self.failures:
            self.failures = 0
            return True
        return False

    def state(self, now: float) -> str:
        if self.next_start is not None:
            wait = max(0.0, self.next_start - now)
            return f"{'crash loop' if self.crash_loop else 'exited'}, restarting in {wait:.1f}s"
        return "crash loop" if self.crash_loop else "running"

    def report(self, now: float) -> dict[str, object]:
        return {
            "state": self.state(now),
            "crashLoop": self.crash_loop,
            "restarts": self.restarts,
            "consecutiveFailures": self.failures,
            "lastExit": self.last_exit,
            "upSeconds": round(now - self.started_at, 1) if self.next_start is None else 0.0,
        }


def health_entry(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The orchestrator's /health check `supervision`: informational (the orchestrator can do its
    job while another agent restarts, so it stays ok) but naming every process in a crash loop.
    Without `cli-trading up` (compose, systemd) there is nothing to show."""
    if not doc:
        return {"ok": True, "supervisor": None}
    procs = doc.get("processes") or {}
    return {
        "ok": True,
        "supervisor": doc.get("supervisorPid"),
        "crashLooping": list(doc.get("crashLooping") or []),
        "processes": {
            n: {k: p.get(k) for k in ("state", "restarts", "crashLoop", "lastExit")} for n, p in procs.items()
        },
    }


async def fetch(redis: Any) -> dict[str, Any] | None:
    """The state `up` last published (None without `up`, or with Redis out), exported as the
    metrics `supervised_process_restarts` and `supervised_process_crash_loop`."""
    from cli_trading import metrics  # the read side only: the policy above stays free of it

    try:
        raw = await redis.get(SUPERVISION_KEY)
        doc: dict[str, Any] | None = orjson.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 - Redis down or a foreign value: nothing to show
        return None
    for name, p in ((doc or {}).get("processes") or {}).items():
        metrics.SUPERVISED_RESTARTS.labels(name).set(p.get("restarts") or 0)
        metrics.SUPERVISED_CRASH_LOOP.labels(name).set(int(bool(p.get("crashLoop"))))
    return doc
