"""Stream operations behind the admin API and the CLI: pending summaries, DLQ listing and
requeue, and an overview of every stream."""

from __future__ import annotations

from typing import Any

import orjson
from redis.exceptions import ResponseError

from cli_trading.bus import requeue
from cli_trading.contracts import SUBSCRIPTIONS, dlq_of
from cli_trading.streamops import text


class NotFound(LookupError):
    pass


KNOWN = {str(s) for s in SUBSCRIPTIONS} | {dlq_of(str(s)) for s in SUBSCRIPTIONS}


async def _exists(r: Any, stream: str) -> bool:
    return bool(await r.exists(stream)) and text(await r.type(stream)) == "stream"


async def require_stream(r: Any, stream: str) -> None:
    if stream not in KNOWN and not await _exists(r, stream):
        raise NotFound(f"unknown stream {stream!r}")


async def pending(r: Any, *, stream: str, group: str) -> dict[str, Any]:
    await require_stream(r, stream)
    try:
        info = await r.xpending(stream, group)
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            raise NotFound(f"no group {group!r} on stream {stream!r}") from exc
        raise
    count, lo, hi = info["pending"], text(info["min"]), text(info["max"])
    per = [[text(c["name"]), int(c["pending"])] for c in info["consumers"] or []]
    oldest_idle_ms = None
    if count:
        first = await r.xpending_range(stream, group, min="-", max="+", count=1)
        oldest_idle_ms = first[0]["time_since_delivered"] if first else None
    return {
        "stream": stream,
        "group": group,
        "summary": [count, lo, hi, per],
        "count": count,
        "consumers": {c: n for c, n in per},
        "oldestIdleMs": oldest_idle_ms,
    }


async def dlq_entries(r: Any, *, stream: str, count: int = 50, start: str = "-") -> dict[str, Any]:
    await require_stream(r, stream)
    rows = await r.xrange(stream, min=start, max="+", count=count + 1)
    entries = []
    for eid, fields in rows[:count]:
        try:
            entry = orjson.loads(fields[b"data"])
        except (KeyError, ValueError):
            entry = {"raw": {text(k): text(v) for k, v in fields.items()}}
        # "id" is the DLQ entry's own id (what requeue takes); the dead message's id is "originalId"
        entries.append({**entry, "originalId": entry.get("id"), "id": text(eid)})
    nxt = text(rows[count][0]) if len(rows) > count else None
    return {"stream": stream, "length": await r.xlen(stream), "entries": entries, "next": nxt}


async def requeue_entries(r: Any, *, dlq_stream: str, entry_id: str | None, all_: bool) -> list[dict[str, str]]:
    await require_stream(r, dlq_stream)
    if not dlq_stream.endswith(".dlq"):
        raise ValueError(f"{dlq_stream!r} is not a dead-letter stream (names end in .dlq)")
    ids = [entry_id] if entry_id else []
    if all_:
        ids = [text(eid) for eid, _ in await r.xrange(dlq_stream, "-", "+")]
    out = []
    for eid in ids:
        new = await requeue(r, dlq_stream, eid)
        if new is None:
            raise NotFound(f"no entry {eid!r} in {dlq_stream!r}")
        out.append({"id": eid, "newId": new})
    return out


async def overview(r: Any) -> list[dict[str, Any]]:
    out = []
    for stream, groups in SUBSCRIPTIONS.items():
        exists = await _exists(r, stream)
        info_groups = await r.xinfo_groups(stream) if exists else []
        out.append(
            {
                "stream": str(stream),
                "length": await r.xlen(stream) if exists else 0,
                "groups": [
                    {"name": text(g["name"]), "pending": g["pending"], "consumers": g["consumers"], "lag": g.get("lag")}
                    for g in info_groups
                ],
                "expectedGroups": [str(g) for g in groups],
                "dlq": dlq_of(stream),
                "dlqLength": await r.xlen(dlq_of(stream)),
            }
        )
    return out
