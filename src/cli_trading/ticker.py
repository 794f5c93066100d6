"""The live lines of `cli-trading up`: one per fill and per rejection, rate-limited."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

# The ticker is a display of at most `per_s` lines a second: under load a read returned after
# each message or two (a round trip and its parsing per run, in `up` and in Redis), so a read
# follows the last one that found messages by this much at least; what came meanwhile is read
# at once (up to 500 entries a stream).
MIN_READ_INTERVAL_S = 0.1


class Ticker:
    """A line per fill and per rejection, at most `per_s` a second (a summary of the rest)."""

    def __init__(self, redis_url: str, per_s: int = 10) -> None:
        self.r = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.per_s = per_s
        self.last: dict[Any, Any] = {"exec.status": "$", "risk.responses": "$"}
        self.window, self.shown, self.skipped = 0.0, 0, 0
        self._next_read = 0.0

    def poll(self, block_ms: int) -> list[str]:
        wait = self._next_read - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            self._anchor()
            res: Any = self.r.xread(self.last, count=500, block=block_ms) or []  # sync client: a list
        except redis.RedisError:
            time.sleep(block_ms / 1000)
            return []
        if res:
            self._next_read = time.monotonic() + MIN_READ_INTERVAL_S
        lines = []
        for stream, entries in res:
            stream = stream.decode()
            for eid, fields in entries:
                self.last[stream] = eid.decode()
                line = self._line(stream, fields)
                if line:
                    lines.append(line)
        return self._limit(lines)

    def _anchor(self) -> None:
        """Each stream read from its last entry at the first read ("$" would miss what comes
        between two reads until a first message moves it to an id)."""
        for stream, last in self.last.items():
            if last == "$":
                top: Any = self.r.xrevrange(stream, count=1)
                self.last[stream] = top[0][0].decode() if top else "0-0"

    @staticmethod
    def _line(stream: str, fields: dict[bytes, bytes]) -> str | None:
        try:
            p = orjson.loads(fields[b"data"])
        except (KeyError, orjson.JSONDecodeError):
            return None
        if stream == "exec.status" and p.get("status") == "filled":
            return f"[green]fill[/green]   {p['side']:<4} {p['qty']} {p['symbol']} @ {p['price']} fee {p.get('fee')}"
        if stream == "exec.status" and p.get("status") in ("rejected", "failed"):
            return f"[red]{p['status']}[/red] {p['side']} {p['qty']} {p['symbol']}: {p.get('reason')}"
        if stream == "risk.responses" and not p.get("ok"):
            return f"[yellow]risk rejected[/yellow] {p.get('requestId', '')[:12]}: {p.get('reason')}"
        return None

    def _limit(self, lines: list[str]) -> list[str]:
        now = time.monotonic()
        out = []
        if now - self.window >= 1:
            if self.skipped:
                out.append(f"[dim]… {self.skipped} more fills/rejections in the last second[/dim]")
            self.window, self.shown, self.skipped = now, 0, 0
        room = max(0, self.per_s - self.shown)
        out += lines[:room]
        self.shown += min(room, len(lines))
        self.skipped += max(0, len(lines) - room)
        return out
