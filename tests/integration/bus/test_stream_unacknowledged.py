"""What a group still owes of a stream (`streamops.unacknowledged`, read by the risk manager's
start), against the real Redis: its pending entries and those not delivered to it, in pages."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from cli_trading import streamops

pytestmark = pytest.mark.integration


async def test_a_group_owes_its_pending_and_undelivered_entries(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = redis_client
    monkeypatch.setattr(streamops, "READ_PAGE", 3)  # several pages of each kind
    assert await streamops.unacknowledged(r, "s", "g") == []  # no stream yet
    ids = [await r.xadd("s", {"data": str(i).encode()}) for i in range(20)]
    every = await streamops.unacknowledged(r, "s", "g")
    assert [e for e, _ in every] == ids  # no group yet: it will read from the start
    await r.xgroup_create("s", "g", id="0")
    await r.xgroup_create("s", "other", id="$")  # another group's progress is not this one's
    await r.xreadgroup("g", "c", {"s": ">"}, count=12)  # 12 delivered, 8 not
    acked = [ids[i] for i in range(12) if i not in (1, 5, 6, 11)]
    await r.xack("s", "g", *acked)
    owed = await streamops.unacknowledged(r, "s", "g")
    assert [e for e, _ in owed] == [ids[i] for i in (1, 5, 6, 11, *range(12, 20))]
    assert owed[0][1] == {b"data": b"1"}
    await r.xreadgroup("g", "c", {"s": ">"})
    await r.xack("s", "g", *ids)
    assert await streamops.unacknowledged(r, "s", "g") == []
