"""Repeats of the same alert within a window are suppressed and counted; the next one that goes
out says how many were held back. Shared by every instance through Redis. A redelivery of the
message that went out is not a repeat (the window remembers its traceId)."""

from __future__ import annotations

from typing import Any

PREFIX = "cli-trading:notify:throttle:"


async def admit(redis: Any, *, key: str, trace_id: str, window_s: float) -> tuple[bool, int]:
    """(send it?, repeats suppressed since the last one sent)."""
    if window_s <= 0:
        return True, 0
    k = PREFIX + key
    if await redis.set(k, trace_id, nx=True, px=int(window_s * 1000)):
        held = await redis.getdel(k + ":count")
        return True, int(held or 0)
    owner = await redis.get(k)
    if owner is not None and owner.decode() == trace_id:
        return True, 0
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(k + ":count")
        pipe.expire(k + ":count", 86_400)
        await pipe.execute()
    return False, 0


async def suppressed(redis: Any, *, key: str) -> int:
    return int(await redis.get(PREFIX + key + ":count") or 0)
