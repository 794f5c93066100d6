"""Stream maintenance: trimming by consumption, and moving a dead letter back.

Streams are trimmed by consumption, never by length: an entry goes once every consumer group
of its stream has read it and acknowledged it. A length cap (MAXLEN) would drop entries a
stalled consumer has not read yet (a database outage of a few minutes at full load is enough);
trimming below the oldest entry still owed to some group (`XTRIM MINID`) cannot.

For each group the floor is its oldest pending entry, or, with nothing pending, the last entry
delivered to it; the stream keeps everything from the lowest floor on. A stream nobody reads yet
(no group) is left alone: nothing in it is known to be consumed. Every consumer trims its own
stream every few seconds; several doing it at once is harmless (the floor only moves up)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

T = TypeVar("T")
TRIM_INTERVAL_S = 10.0
TRIM_STEP = 10_000  # entries per XTRIM call
TRIM_MAX_STEPS = 100  # per stream and interval: up to 100,000 entries a second


def text(v: bytes | T) -> str | T:
    """A Redis reply's bytes as a str (the clients here do not decode replies); anything else as is."""
    return v.decode() if isinstance(v, bytes) else v


def parse_id(eid: bytes | str) -> tuple[int, int]:
    ms, _, seq = text(eid).partition("-")
    return int(ms), int(seq or 0)


def lowest_floor(groups: list[tuple[tuple[int, int], tuple[int, int] | None]]) -> tuple[int, int] | None:
    """Pure: from each group's (last delivered, oldest pending or None), the id below which every
    group is done; None when there is no group."""
    floors = [pending if pending is not None else last for last, pending in groups]
    return min(floors) if floors else None


async def trim_consumed(redis: Any, stream: str) -> int:
    """Trim `stream` below what every group has consumed; returns the entries removed."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such key (yet)
        return 0
    seen: list[tuple[tuple[int, int], tuple[int, int] | None]] = []
    for g in groups:
        name = g["name"]
        pending = None
        if g["pending"]:
            summary = await redis.xpending(stream, name)
            if summary["min"] is not None:
                pending = parse_id(summary["min"])
        seen.append((parse_id(g["last-delivered-id"]), pending))
    floor = lowest_floor(seen)
    if floor is None or floor == (0, 0):
        return 0
    # `~`: whole radix-tree nodes only (cheap); LIMIT: a few milliseconds of Redis per call, so a
    # backlog that has just drained is trimmed in steps that leave room for the traffic
    total = 0
    for _ in range(TRIM_MAX_STEPS):
        n = int(await redis.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=True, limit=TRIM_STEP))
        total += n
        if n < TRIM_STEP:
            break
    return total


READ_PAGE = 10_000  # entries per XRANGE / XPENDING call when reading what a group still owes


async def unacknowledged(redis: Any, stream: str, group: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of `stream` that `group` has not acknowledged: those delivered and pending,
    and those not delivered yet (every entry when the group does not exist yet: consumers create
    theirs from the stream's start, `bus.Consumer.start_id`). Oldest first."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such key (yet)
        return []
    info = next((g for g in groups if text(g["name"]) == group), None)
    last = parse_id(info["last-delivered-id"]) if info else (-1, 0)
    pending: set[tuple[int, int]] = set()
    low = "-"
    while info and info["pending"]:  # in pages: a stalled consumer may owe hundreds of thousands
        page = await redis.xpending_range(stream, group, min=low, max="+", count=READ_PAGE)
        pending.update(parse_id(p["message_id"]) for p in page)
        if len(page) < READ_PAGE:
            break
        low = "(" + text(page[-1]["message_id"])
    start = f"{min(pending)[0]}-{min(pending)[1]}" if pending else f"({last[0]}-{last[1]}" if info else "-"
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    while True:
        page = await redis.xrange(stream, min=start, max="+", count=READ_PAGE)
        out.extend(e for e in page if parse_id(e[0]) > last or parse_id(e[0]) in pending)
        if len(page) < READ_PAGE:
            return out
        start = "(" + text(page[-1][0])


async def requeue(r: aioredis.Redis, dlq_stream: str, entry_id: str) -> str | None:
    """Move one DLQ entry back to its original stream. XADD and XDEL run in one MULTI/EXEC, so a
    crash can never lose the message between the two. Returns the new id, None if not found."""
    found: Any = await r.xrange(dlq_stream, entry_id, entry_id)  # [(id, {field: value})]
    if not found:
        return None
    entry = orjson.loads(found[0][1][b"data"])
    payload = entry["payload"]
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)  # decoded JSON: no Decimals
    async with r.pipeline(transaction=True) as pipe:
        pipe.xadd(entry["originalStream"], {"data": data})
        pipe.xdel(dlq_stream, entry_id)
        new_id, _ = await pipe.execute()
    return new_id.decode()
