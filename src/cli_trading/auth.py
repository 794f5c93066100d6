"""Admin authentication: the token store (with file reload and rotation grace), constant-time
comparison, the per-address lockout and the allow-list. Pure of HTTP: web.py wires it.

Rotation protocol (shared with `cli-trading secrets rotate`): the current token is in
ADMIN_TOKEN_FILE; during a graceful rotation the previous one is in `<file>.previous` as
{"token", "validUntil"}. A forced rotation deletes that file, revoking the old token at once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cli_trading.contracts import now_utc
from cli_trading.isotime import parse_iso


def fingerprint(token: str) -> str:
    """What logs and the audit trail say instead of the token: a short one-way digest."""
    return "tok:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def previous_path(token_file: str | Path) -> Path:
    return Path(f"{token_file}.previous")


@dataclass
class TokenStore:
    token: str | None = None
    token_file: str | None = None
    _mtime: float = -1.0
    _prev_mtime: float = -1.0
    _previous: tuple[str, datetime] | None = None

    def _reload(self) -> None:
        if not self.token_file:
            return
        p = Path(self.token_file)
        try:
            m = p.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if m != self._mtime:
            self._mtime = m
            self.token = p.read_text().strip() or None
        prev = previous_path(p)
        try:
            pm = prev.stat().st_mtime_ns
        except FileNotFoundError:
            self._previous, self._prev_mtime = None, -1.0
            return
        if pm != self._prev_mtime:
            self._prev_mtime = pm
            try:
                d = json.loads(prev.read_text())
                # a hand-written validUntil without a zone is UTC (parse_iso)
                token, until = d["token"], parse_iso(d["validUntil"])
                if not isinstance(token, str):
                    raise ValueError("token is not a string")
                # never let a bad grace file break the check of the current token
                self._previous = (token, until)
            except (ValueError, KeyError, TypeError, AttributeError):
                self._previous = None

    def configured(self) -> bool:
        self._reload()
        return bool(self.token)

    def check(self, presented: str | None) -> bool:
        """Constant-time comparison against the current token and, within its grace, the
        previous one."""
        self._reload()
        if not presented or not self.token:
            return False
        ok = hmac.compare_digest(presented.encode(), self.token.encode())
        if self._previous and now_utc() < self._previous[1]:
            ok |= hmac.compare_digest(presented.encode(), self._previous[0].encode())
        return ok


@dataclass
class Lockout:
    """N failures within a window lock an address out for a while. Thread-safe: the HTTP server's
    thread counts the admin API's failures, the agent's loop those of its guarded routes."""

    limit: int = 10
    window_s: float = 60.0
    lockout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _fails: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _locked: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _now(self) -> float:
        return self.clock()

    def retry_after(self, addr: str) -> int | None:
        with self._lock:
            until = self._locked.get(addr)
            if until is None:
                return None
            left = until - self._now()
            if left <= 0:
                del self._locked[addr]
                self._fails.pop(addr, None)
                return None
            return max(1, int(left + 0.999))

    def fail(self, addr: str) -> bool:
        """Record a failure; True when it locks the address."""
        with self._lock:
            now = self._now()
            q = self._fails[addr]
            q.append(now)
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                self._locked[addr] = now + self.lockout_s
                return True
            return False

    def recent_failures(self) -> int:
        with self._lock:
            now = self._now()
            return sum(1 for q in self._fails.values() for t in q if now - t <= self.window_s)


def parse_allow_list(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(s.strip(), strict=False) for s in spec.split(",") if s.strip()]


def allowed(addr: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not nets:
        return True
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)
