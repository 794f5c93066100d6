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
    return {"keys": sum(types.values()), "types": dict(types)}


def load(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            out.append({**e, "key": base64.b64decode(e["key"]), "payload": base64.b64decode(e["payload"])})
    return out


def restore(r: redis.Redis, src: Path, *, then: Callable[[Any], Any] | None = None) -> int:
    """Replace every key of ours with the backup's, atomically; `then(pipeline)` adds its own
    commands (the halt flag) to the same transaction."""
    entries = load(src)
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
