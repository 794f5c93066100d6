"""Faults on demand, and the simulator's own request-weight limit.

A `FaultPlan` (from the command line, or `POST /sim/faults` at run time) says what goes wrong:
each kind has a `*_next` count (the next N matching requests, deterministic: what tests use) and a
`*_rate` probability (random, seeded: what a rehearsal uses). Kinds:
- latency: every request on `paths` waits `latency_ms` before it is carried out, and its
  answer waits `answer_delay_ms` after (an order is then done while the client still waits: the
  window in which a client crash leaves an order it never heard of);
- error: a 5xx page from the front (no JSON), before anything is done;
- throttle: 429 (or 418) with `Retry-After`, before anything is done; `throttle_for_s` makes a
  storm: every matching request for that many seconds from when the plan is set;
- lose_answer: an order placement or cancel is carried out and written to disk, then the
  answer is lost: held `lose_answer_hold_s` then dropped (`timeout`, the client times out),
  the connection closed at once (`drop`), or a 503 with Binance's -1007 "execution status
  unknown" instead of the answer (`error`);
- reject: an order placement refused with -2010, nothing created.
The limiter is separate: more than `limit` requests in a minute answer 429 with Retry-After; a
client that goes on past twice the limit is banned with 418 for `ban_s`, as Binance does.
`RequestLog` keeps when each request arrived and with which API key, so that a test (or a
rehearsal) can see how fast a client really asked: `GET /sim/requests`."""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cli_trading.exchanges.sim.errors import BANNED, INTERNAL, TOO_MANY, BinanceError, error

ORDER_PATH = "/api/v3/order"


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(default=["/api/v3/", "/sapi/"], description="path prefixes the request faults hit")
    methods: list[str] = Field(default=[], description="HTTP methods the request faults hit (empty: all)")
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    answer_delay_ms: int = Field(default=0, ge=0, le=600_000)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_next: int = Field(default=0, ge=0)
    error_status: int = Field(default=503, ge=500, le=599)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_next: int = Field(default=0, ge=0)
    throttle_for_s: float = Field(default=0.0, ge=0, le=3600)  # a storm: every matching request meanwhile
    throttle_status: Literal[429, 418] = 429
    retry_after_s: int = Field(default=1, ge=0, le=3600)
    lose_answer_rate: float = Field(default=0.0, ge=0, le=1)
    lose_answer_next: int = Field(default=0, ge=0)
    lose_answer_mode: Literal["timeout", "drop", "error"] = "timeout"
    lose_answer_hold_s: float = Field(default=30.0, ge=0, le=3600)
    reject_rate: float = Field(default=0.0, ge=0, le=1)
    reject_next: int = Field(default=0, ge=0)


class Faults:
    def __init__(self, plan: FaultPlan | None = None, seed: int | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - simulated faults, reproducible by seed: no secret
        self.counts: dict[str, int] = {"error": 0, "throttle": 0, "lose_answer": 0, "reject": 0}
        self.set_plan(plan or FaultPlan(), time.time())

    def set_plan(self, plan: FaultPlan, now: float) -> None:
        """Replace the plan; a storm (`throttle_for_s`) starts now."""
        self.plan = plan
        self.storm_until = now + plan.throttle_for_s

    def _hits(self, path: str, method: str | None = None) -> bool:
        methods = self.plan.methods
        on_method = not methods or method is None or method.upper() in (m.upper() for m in methods)
        return on_method and any(path.startswith(p) for p in self.plan.paths)

    def _take(self, kind: str) -> bool:
        """Consume one `<kind>_next`, else the storm (throttle), else roll `<kind>_rate`."""
        left: int = getattr(self.plan, f"{kind}_next")
        rate: float = getattr(self.plan, f"{kind}_rate")
        storm = kind == "throttle" and time.time() < self.storm_until
        hit = left > 0 or storm or self.rng.random() < rate
        if left > 0:
            setattr(self.plan, f"{kind}_next", left - 1)
        if hit:
            self.counts[kind] += 1
        return hit

    def latency_s(self, path: str) -> float:
        return self.plan.latency_ms / 1000 if self._hits(path) else 0.0

    def answer_delay_s(self, path: str) -> float:
        return self.plan.answer_delay_ms / 1000 if self._hits(path) else 0.0

    def before(self, path: str, method: str | None = None) -> BinanceError | None:
        """A fault answered instead of the request (nothing is done), or None."""
        if not self._hits(path, method):
            return None
        if self._take("throttle"):
            retry = str(self.plan.retry_after_s)
            status = self.plan.throttle_status
            pair = TOO_MANY if status == 429 else BANNED
            exc = error(pair, status, limit=6000, until="soon")
            exc.headers = {"Retry-After": retry}
            return exc
        if self._take("error"):
            return error(INTERNAL, self.plan.error_status)
        return None

    def loses_answer(self, method: str, path: str) -> bool:
        return method in ("POST", "DELETE") and path == ORDER_PATH and self._take("lose_answer")

    def rejects(self) -> bool:
        return self._take("reject")

    def describe(self) -> dict[str, object]:
        storm = max(0.0, self.storm_until - time.time())
        return {"plan": self.plan.model_dump(), "injected": dict(self.counts), "stormLeftS": round(storm, 3)}


class RequestLog:
    """When each request reached the simulator, with its API key (empty for public requests) and
    path: the last `size` of them."""

    def __init__(self, size: int = 50_000) -> None:
        self.entries: deque[tuple[float, str, str, str]] = deque(maxlen=size)

    def add(self, now: float, key: str, method: str, path: str) -> None:
        self.entries.append((now, key, method, path))

    def since(self, t: float) -> list[tuple[float, str, str, str]]:
        return [e for e in self.entries if e[0] >= t]


def busiest(times: list[float], window_s: float = 1.0) -> int:
    """The most requests in any window of `window_s` seconds (a half-open window [t, t + w))."""
    ordered, most, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


class RateLimiter:
    def __init__(self, limit: int, ban_s: int = 60) -> None:
        self.limit, self.ban_s = limit, ban_s
        self.recent: deque[float] = deque()
        self.banned_until = 0.0

    def used(self, now: float) -> int:
        while self.recent and self.recent[0] <= now - 60:
            self.recent.popleft()
        return len(self.recent)

    def check(self, now: float) -> BinanceError | None:
        if self.limit <= 0:
            return None
        if now < self.banned_until:
            exc = error(BANNED, 418, until=int(self.banned_until * 1000))
            exc.headers = {"Retry-After": str(int(self.banned_until - now) + 1)}
            return exc
        used = self.used(now) + 1
        self.recent.append(now)
        if used > 2 * self.limit:
            self.banned_until = now + self.ban_s
            return self.check(now)
        if used > self.limit:
            exc = error(TOO_MANY, 429, limit=self.limit)
            exc.headers = {"Retry-After": str(max(1, int(self.recent[0] + 60 - now) + 1))}
            return exc
        return None
