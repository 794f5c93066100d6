"""Streams trimmed by consumption against a real Redis: what every group has acknowledged goes,
nothing a group has not read or not acknowledged does, and publishing no longer caps length."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cli_trading.bus import Bus, Consumer, per_message
from cli_trading.embedded_redis import EmbeddedRedis
from cli_trading.streamops import trim_consumed


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path)
    yield server.start()
    server.stop()


def test_trim_keeps_every_entry_a_group_still_owes(own_redis: str) -> None:
    async def go() -> None:
        r = aioredis.from_url(own_redis)
        ids = [await r.xadd("s", {"data": b"{}"}) for _ in range(3000)]
        assert await trim_consumed(r, "s") == 0  # no group: nothing is known to be consumed
        await r.xgroup_create("s", "fast", id="0")
        await r.xgroup_create("s", "slow", id="0")
        await r.xreadgroup("fast", "c", {"s": ">"}, count=3000)
        await r.xack("s", "fast", *ids)
        await r.xreadgroup("slow", "c", {"s": ">"}, count=2000)  # read 2000, acked all but #1500
        await r.xack("s", "slow", *ids[:1500], *ids[1501:2000])
        await trim_consumed(r, "s")
        first = (await r.xrange("s", count=1))[0][0]
        assert first <= ids[1500], "an unacknowledged entry was trimmed"
        assert await r.xlen("s") < 3000, "nothing consumed was trimmed"
        pending = await r.xpending_range("s", "slow", min="-", max="+", count=10)
        assert [p["message_id"] for p in pending] == [ids[1500]]
        assert len(await r.xrange("s", ids[1500], "+")) == 1500  # owed and unread entries all there
        await r.xack("s", "slow", ids[1500])
        await r.xreadgroup("slow", "c", {"s": ">"}, count=1000)
        await r.xack("s", "slow", *ids[2000:])
        await trim_consumed(r, "s")
        assert await r.xlen("s") < 200  # all consumed: down to the last radix-tree node
        await r.aclose()

    asyncio.run(go())


def test_a_consumer_trims_its_stream_and_publishing_is_not_capped(own_redis: str) -> None:
    async def go() -> None:
        bus = Bus(own_redis)
        seen: list[str] = []

        async def handle(d):  # noqa: ANN001, ANN202 - a Delivery
            seen.append(d.id)

        c = Consumer(bus, "t", "g", "c1", per_message(handle), start_id="0")
        await bus.publish_many([("t", {"n": i}) for i in range(120_000)])  # more than the old cap
        assert await bus.redis.xlen("t") == 120_000
        await c.burst()
        assert len(seen) == 120_000
        c._next_trim = 0.0  # due now (every TRIM_INTERVAL_S otherwise)
        await c._step(block=False)
        assert await bus.redis.xlen("t") < 1_000
        await c.close()
        await bus.close()

    asyncio.run(go())
