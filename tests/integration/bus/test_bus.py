"""The Redis Streams bus against a REAL Redis: groups, retries, DLQ, claims, idempotency, NOGROUP
recovery, requeue and the pending gauge."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cli_trading import busops
from cli_trading.bus import Bus, Consumer, Delivery, Handled, PoisonMessage, per_message, requeue
from cli_trading.contracts import INFLIGHT_KEY, NotifyEvent, dlq_of

pytestmark = pytest.mark.integration

GROUP = "testers"


@pytest.fixture
def stream() -> str:
    """A stream name of this test's own (metrics are process-wide, labelled by stream)."""
    return f"test.{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def bus(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[Bus]:
    b = Bus(redis_url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def make_consumer(bus: Bus, stream: str) -> AsyncIterator[Callable[..., Consumer]]:
    made: list[Consumer] = []

    def make(handler: Callable[[Delivery], Awaitable[None]], name: str = "c1", **kw: Any) -> Consumer:
        kw.setdefault("retry_backoff_s", 0.0)
        c = Consumer(bus, kw.pop("stream", stream), kw.pop("group", GROUP), name, per_message(handler), **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


class Recorder:
    """A handler that records what it saw; `fail` decides per delivery whether to raise."""

    def __init__(self, fail: Callable[[Delivery, int], BaseException | None] | None = None, delay: float = 0.0) -> None:
        self.seen: list[Delivery] = []
        self.ok: list[Delivery] = []
        self.attempts: Counter[str] = Counter()
        self.fail, self.delay = fail, delay

    async def __call__(self, d: Delivery) -> None:
        self.seen.append(d)
        self.attempts[d.id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            exc = self.fail(d, self.attempts[d.id])
            if exc is not None:
                raise exc
        self.ok.append(d)

    def ok_payloads(self, field: str = "n") -> list[Any]:
        return [d.payload[field] for d in self.ok]


async def dlq_entries(r: aioredis.Redis, stream: str) -> list[tuple[str, dict[str, Any]]]:
    return [(eid.decode(), orjson.loads(f[b"data"])) for eid, f in await r.xrange(dlq_of(stream))]


async def pending(r: aioredis.Redis, stream: str, group: str = GROUP) -> int:
    return int((await r.xpending(stream, group))["pending"])


async def wait_for(cond: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


by_request_id = "requestId"  # the messages' stable key


# -- publishing ------------------------------------------------------------------------------
async def test_publish_and_publish_many(bus: Bus, redis_client: aioredis.Redis, stream: str) -> None:
    eid = await bus.publish(stream, {"requestId": "r1", "qty": Decimal("0.123456789012"), "side": "buy"})
    assert isinstance(eid, str) and "-" in eid
    [(got_id, fields)] = await redis_client.xrange(stream)
    assert got_id.decode() == eid
    assert orjson.loads(fields[b"data"]) == {"requestId": "r1", "qty": "0.123456789012", "side": "buy"}

    other = f"{stream}.other"
    await bus.publish_many([(stream, {"n": 1}), (other, NotifyEvent(type="t", message="m")), (stream, {"n": 2})])
    await bus.publish_many([])
    assert await redis_client.xlen(stream) == 3
    [(_, f)] = await redis_client.xrange(other)
    msg = orjson.loads(f[b"data"])
    assert msg["type"] == "t" and msg["severity"] == "info" and msg["message"] == "m"
    assert "ts" in msg and "traceId" in msg
    assert await bus.ping() is True


async def test_concurrent_publishes_share_one_round_trip_and_keep_order(
    bus: Bus, redis_client: aioredis.Redis, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real = busops.pipelined

    async def counting(redis: Any, cmds: list[tuple[Any, ...]]) -> list[Any]:
        sent.append(len(cmds))
        return await real(redis, cmds)

    monkeypatch.setattr("cli_trading.bus.pipelined", counting)
    ids = await asyncio.gather(*(bus.publish(stream, {"n": i}) for i in range(50)))
    assert sent == [50]  # fifty publishers in one event-loop iteration: one round trip
    assert len(set(ids)) == 50
    entries = await redis_client.xrange(stream)
    assert [e[0].decode() for e in entries] == list(ids)
    assert [orjson.loads(f[b"data"])["n"] for _, f in entries] == list(range(50))


async def test_a_publish_redis_refuses_fails_alone(bus: Bus, redis_client: aioredis.Redis, stream: str) -> None:
    await redis_client.set(f"{stream}.str", "not a stream")
    got = await asyncio.gather(
        bus.publish(stream, {"n": 1}),
        bus.publish(f"{stream}.str", {"n": 2}),
        bus.publish(stream, {"n": 3}),
        return_exceptions=True,
    )
    assert isinstance(got[1], ResponseError) and "WRONGTYPE" in str(got[1])
    entries = await redis_client.xrange(stream)
    assert [e[0].decode() for e in entries] == [got[0], got[2]]  # the others are in, in order
    # the connection is still in step: the next publish gets its own reply
    assert (await redis_client.xrange(stream, min=await bus.publish(stream, {"n": 4})))[0][1] == {b"data": b'{"n":4}'}


async def test_coalesced_publish_raises_for_every_waiting_publisher(free_port: int) -> None:
    b = Bus(f"redis://127.0.0.1:{free_port}/0")  # nothing listens there
    try:
        results = await asyncio.gather(*(b.publish("s", {"n": i}) for i in range(3)), return_exceptions=True)
        assert len(results) == 3 and all(isinstance(r, RedisConnectionError) for r in results)
    finally:
        await b.close()


async def test_handler_outputs_and_inflight_removal_land_with_the_acks(
    bus: Bus, redis_client: aioredis.Redis, stream: str
) -> None:
    out = f"{stream}.out"
    await redis_client.sadd(INFLIGHT_KEY, "o1", "o2", "keep")

    async def handler(batch: list[Delivery]) -> Handled:
        return Handled(
            [None] * len(batch), emit=[(out, {"echo": d.payload["n"]}) for d in batch], inflight_done=["o1", "o2"]
        )

    c = Consumer(bus, stream, GROUP, "c1", handler)
    try:
        for i in range(3):
            await bus.publish(stream, {"n": i})
        assert await c.burst() == 3
    finally:
        await c.close()
    assert [orjson.loads(f[b"data"])["echo"] for _, f in await redis_client.xrange(out)] == [0, 1, 2]
    assert await redis_client.smembers(INFLIGHT_KEY) == {b"keep"}
    assert (await redis_client.xpending(stream, GROUP))["pending"] == 0
    await redis_client.delete(INFLIGHT_KEY)


async def test_ping_false_when_redis_unreachable(free_port: int) -> None:
    b = Bus(f"redis://127.0.0.1:{free_port}/0")  # nothing listens there
    try:
        assert await b.ping() is False
    finally:
        await b.close()


# -- groups ----------------------------------------------------------------------------------
async def test_two_consumers_in_one_group_share_the_messages(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec_a, rec_b = Recorder(delay=0.002), Recorder(delay=0.002)
    a = make_consumer(rec_a, "agent-1", batch=5)
    b = make_consumer(rec_b, "agent-2", batch=5)
    await asyncio.gather(a.ensure_group(), b.ensure_group())
    await bus.publish_many([(stream, {"n": i}) for i in range(40)])
    await asyncio.gather(a.burst(), b.burst())
    got = rec_a.ok_payloads() + rec_b.ok_payloads()
    assert sorted(got) == list(range(40))  # each message handled exactly once in total
    assert rec_a.ok and rec_b.ok  # and both instances took a share
    assert await pending(redis_client, stream) == 0


async def test_two_consumers_share_in_run_loops(bus: Bus, make_consumer: Callable[..., Consumer], stream: str) -> None:
    rec_a, rec_b = Recorder(delay=0.001), Recorder(delay=0.001)
    a = make_consumer(rec_a, "agent-1", batch=10, block_ms=50)
    b = make_consumer(rec_b, "agent-2", batch=10, block_ms=50)
    await a.ensure_group()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in (a, b)]
    try:
        await asyncio.sleep(0.05)
        await bus.publish_many([(stream, {"n": i}) for i in range(100)])
        await wait_for(lambda: len(rec_a.ok) + len(rec_b.ok) >= 100)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(rec_a.ok_payloads() + rec_b.ok_payloads()) == list(range(100))


async def test_new_group_reads_from_start_by_default(
    bus: Bus, make_consumer: Callable[..., Consumer], stream: str
) -> None:
    await bus.publish(stream, {"n": 1})
    rec = Recorder()
    assert await make_consumer(rec).burst() == 1
    assert rec.ok_payloads() == [1]
    # Another group on the same stream gets its own copy.
    rec2 = Recorder()
    assert await make_consumer(rec2, group="others").burst() == 1
    assert rec2.ok_payloads() == [1]


# -- failures, retries, DLQ ------------------------------------------------------------------
async def test_failing_message_retried_then_dead_lettered(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: RuntimeError("boom") if d.payload["n"] == 2 else None)
    c = make_consumer(rec, max_failures=3)
    ids = [await bus.publish(stream, {"n": i, "requestId": f"r{i}"}) for i in range(1, 4)]
    await c.burst()
    assert sorted(rec.ok_payloads()) == [1, 3]
    assert rec.attempts[ids[1]] == 3  # tried max_failures times
    [(_, entry)] = await dlq_entries(redis_client, stream)
    assert set(entry) == {"originalStream", "group", "id", "payload", "error", "failures", "ts"}
    assert entry["originalStream"] == stream and entry["group"] == GROUP and entry["id"] == ids[1]
    assert entry["payload"] == {"n": 2, "requestId": "r2"}
    assert entry["error"] == "RuntimeError: boom"
    assert entry["failures"] == 3
    assert entry["ts"].endswith("Z")
    assert await pending(redis_client, stream) == 0  # acked
    assert not await redis_client.hexists(c._fail_key, ids[1])  # failure count cleaned up
    assert REGISTRY.get_sample_value("trading_dlq_messages_total", {"stream": stream}) == 1
    # Nothing more to do.
    assert await c.burst() == 0 and rec.attempts[ids[1]] == 3


async def test_outage_is_never_dead_lettered_and_the_batch_waits_for_the_dependency(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    """A database outage raises from the handler (e.g. ConnectionRefusedError): the message is not
    the culprit, so it is neither counted nor dead-lettered, however many tries it takes."""
    down = True
    rec = Recorder(fail=lambda d, n: ConnectionRefusedError("database down") if down else None)
    c = make_consumer(rec, max_failures=2, retry_backoff_s=0.001)
    eid = await bus.publish(stream, {"n": 1, "requestId": "r1"})
    for _ in range(6):  # three times max_failures
        c._retry_at = 0.0  # skip the backoff wait
        await c.burst()
    assert rec.attempts[eid] == 6 and not rec.ok
    assert await dlq_entries(redis_client, stream) == []
    assert await pending(redis_client, stream) == 1
    assert not await redis_client.hexists(c._fail_key, eid)  # never counted against the message
    assert c.stalled and "database down" in c.stalled
    down = False
    c._retry_at = 0.0
    await c.burst()
    assert rec.ok_payloads() == [1] and c.stalled is None
    assert await pending(redis_client, stream) == 0


async def test_a_raising_batch_handler_backs_off_instead_of_crashing(
    bus: Bus, redis_client: aioredis.Redis, stream: str
) -> None:
    calls = 0

    async def handler(batch: list[Delivery]) -> list[None]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("bug or outage")
        return [None] * len(batch)

    c = Consumer(bus, stream, GROUP, "c1", handler, retry_backoff_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        await bus.publish(stream, {"n": 1})
        await wait_for(lambda: calls >= 3, within=5)
        await wait_for(lambda: c.stalled is None, within=2)
        assert await pending(redis_client, stream) == 0
        assert not task.done()  # the consumer never died
    finally:
        stop.set()
        await task
        await c.close()


async def test_transient_failure_recovers_without_dlq(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: RuntimeError("flaky") if n <= 2 else None)
    c = make_consumer(rec, max_failures=5)
    eid = await bus.publish(stream, {"n": 1})
    await c.burst()
    assert rec.attempts[eid] == 3 and rec.ok_payloads() == [1]
    assert await dlq_entries(redis_client, stream) == []
    assert await pending(redis_client, stream) == 0
    assert await redis_client.exists(c._fail_key) == 0  # no failure count left behind


async def test_retry_waits_for_backoff(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: RuntimeError("once") if n == 1 else None)
    c = make_consumer(rec, retry_backoff_s=0.3)
    eid = await bus.publish(stream, {"n": 1})
    await c.burst()
    assert rec.attempts[eid] == 1 and rec.ok == []
    assert await pending(redis_client, stream) == 1  # stays pending, not lost
    await asyncio.sleep(0.35)
    await c.burst()
    assert rec.attempts[eid] == 2 and rec.ok_payloads() == [1]
    assert await pending(redis_client, stream) == 0


async def test_poison_message_dead_lettered_at_once(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: PoisonMessage("wrong shape") if d.payload["n"] == 1 else None)
    c = make_consumer(rec, max_failures=5)
    eid = await bus.publish(stream, {"n": 1})
    await bus.publish(stream, {"n": 2})
    await c.burst()
    assert rec.attempts[eid] == 1
    assert rec.ok_payloads() == [2]
    [(_, entry)] = await dlq_entries(redis_client, stream)
    assert entry["id"] == eid and entry["failures"] == 1 and entry["error"] == "PoisonMessage: wrong shape"
    assert await pending(redis_client, stream) == 0


@pytest.mark.parametrize(
    "fields", [{"data": b"not json"}, {"data": b"[1, 2]"}, {"other": b"{}"}], ids=["not-json", "not-object", "no-data"]
)
async def test_undecodable_entry_dead_lettered_and_consumer_carries_on(
    bus: Bus,
    make_consumer: Callable[..., Consumer],
    redis_client: aioredis.Redis,
    stream: str,
    fields: dict[str, bytes],
) -> None:
    rec = Recorder()
    c = make_consumer(rec)
    await bus.publish(stream, {"n": 1})
    bad = (await redis_client.xadd(stream, fields)).decode()
    await bus.publish(stream, {"n": 2})
    await c.burst()
    assert rec.ok_payloads() == [1, 2]
    [(_, entry)] = await dlq_entries(redis_client, stream)
    assert entry["id"] == bad and entry["failures"] == 1 and entry["error"].startswith("undecodable")
    assert entry["originalStream"] == stream and entry["group"] == GROUP
    assert entry["payload"] == fields.get("data", b"").decode()
    assert await pending(redis_client, stream) == 0
    await bus.publish(stream, {"n": 3})
    await c.burst()
    assert rec.ok_payloads() == [1, 2, 3]


# -- idempotency -----------------------------------------------------------------------------
async def test_duplicate_key_handled_once_across_reads(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder()
    c = make_consumer(rec, key=by_request_id)
    await bus.publish(stream, {"requestId": "r1", "n": 1})
    await c.burst()
    await bus.publish(stream, {"requestId": "r1", "n": 2})  # redelivered decision
    await bus.publish(stream, {"requestId": "r2", "n": 3})
    await c.burst()
    assert rec.ok_payloads() == [1, 3]
    assert await pending(redis_client, stream) == 0
    assert await redis_client.ttl(c._idem_key("r1")) > 0  # keys expire


async def test_a_batch_settles_in_one_xack_and_one_key_group_all_or_nothing(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: RuntimeError("once") if d.payload["n"] == 2 and n == 1 else None)
    c = make_consumer(rec, key=by_request_id)
    await c.ensure_group()
    ids = await asyncio.gather(*(bus.publish(stream, {"requestId": f"r{n}", "n": n}) for n in range(4)))
    dup = await bus.publish(stream, {"requestId": "r0", "n": 9})  # r0 again in the same batch
    assert await c._step(block=False) == 5
    ops = c._unsettled.args  # the writes that settle the batch, not yet sent
    acks = [i for i, a in enumerate(ops) if a == "XACK"]
    sets = [i for i, a in enumerate(ops) if a == "SET_ALL"]
    assert len(acks) == 1 and len(sets) == 1  # one group each, whatever the batch's size
    n_ack, n_set = ops[acks[0] - 1], ops[sets[0] - 1]
    assert sorted(ops[acks[0] + 3 : acks[0] + n_ack]) == sorted([ids[0], ids[1], ids[3], dup])  # not the failed one
    assert ops[sets[0] + 1 : sets[0] + n_set] == [c._idem_key(""), c.idem_ttl_s, "r0", "r1", "r3"]
    # a crash between the handler and the settle: nothing of the batch is acked nor any key set;
    # another consumer of the group claims it all and handles it again
    assert await pending(redis_client, stream) == 5
    assert await redis_client.exists(*(c._idem_key(f"r{n}") for n in range(4))) == 0
    await asyncio.sleep(0.15)
    after = Recorder()
    survivor = make_consumer(after, "survivor", key=by_request_id, claim_idle_ms=100)
    await survivor.burst()
    assert sorted(after.ok_payloads()) == [0, 1, 2, 3]  # r0's duplicate skipped by its key
    assert await pending(redis_client, stream) == 0
    assert await redis_client.exists(*(c._idem_key(f"r{n}") for n in range(4))) == 4
    assert min([await redis_client.ttl(c._idem_key(f"r{n}")) for n in range(4)]) > 0
    await bus.publish(stream, {"requestId": "r3", "n": 10})  # published again: skipped by its key
    await survivor.burst()
    assert sorted(after.ok_payloads()) == [0, 1, 2, 3] and await pending(redis_client, stream) == 0


async def test_duplicate_key_in_one_batch_handled_once(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder()
    c = make_consumer(rec, key=by_request_id)
    await bus.publish_many(
        [
            (stream, {"requestId": "r1", "n": 1}),
            (stream, {"requestId": "r1", "n": 2}),
            (stream, {"requestId": "r2", "n": 3}),
            (stream, {"requestId": "r1", "n": 4}),
        ]
    )
    await c.burst()
    assert rec.ok_payloads() == [1, 3]
    assert await pending(redis_client, stream) == 0


async def blocked_in_xread(r: aioredis.Redis, n: int = 1) -> bool:
    """`n` clients wait in a blocking XREAD now (the test session's Redis is its own)."""
    clients = await r.client_list()
    return sum(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in clients) >= n


async def test_duplicates_skipped_whether_waiting_or_woken_without_an_mget(
    bus: Bus,
    make_consumer: Callable[..., Consumer],
    redis_client: aioredis.Redis,
    stream: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog is read with its keys looked up in the same call; so is a message that wakes a
    consumer waiting on an empty stream (busops.read_blocking): no MGET either way, and the
    duplicate that arrives while it waits is skipped."""
    rec = Recorder()
    c = make_consumer(rec, key=by_request_id, batch=3, block_ms=5000)
    mgets: list[int] = []
    mget = bus.redis.mget

    async def counted(keys: list[str]) -> Any:
        mgets.append(len(keys))
        return await mget(keys)

    monkeypatch.setattr(bus.redis, "mget", counted)
    rids = ["r1", "r2", "r2", "r3", "r1", "r4", "r2", "", "r5"]
    await bus.publish_many([(stream, {"requestId": rid, "n": n}) for n, rid in enumerate(rids)])
    await c.burst()  # batches of 3: the duplicates fall within a batch and across batches
    assert rec.ok_payloads() == [0, 1, 3, 5, 7, 8]
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        for n, rid in [(9, "r3"), (10, "r6"), (11, "r6")]:  # one at a time, each to a waiting consumer
            await wait_for_async(lambda: blocked_in_xread(redis_client))
            before = c.handled
            await bus.publish(stream, {"requestId": rid, "n": n})
            await wait_for(lambda before=before: c.handled > before)  # well before the 5 s wait's end
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert rec.ok_payloads() == [0, 1, 3, 5, 7, 8, 10] and mgets == []
    assert await pending(redis_client, stream) == 0


async def wait_for_async(cond: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_payload_lua_cannot_decode_has_its_key_asked_for(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    """cjson refuses some JSON that orjson reads (here: nesting deeper than
    cjson's 1000 levels, within orjson's 1024); READ flags such a message not known and the consumer looks its key up
    itself: a duplicate is still skipped."""
    rec = Recorder()
    c = make_consumer(rec, key=by_request_id)
    deep = "[" * 1010 + "]" * 1010
    data = b'{"requestId": "r1", "n": 1, "deep": ' + deep.encode() + b"}"
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        pytest.fail("orjson must read what cjson refuses for this test to mean anything")
    await redis_client.set(c._idem_key("r1"), 1)
    await redis_client.xadd(stream, {"data": data})
    await bus.publish(stream, {"requestId": "r2", "n": 2})
    await c.burst()
    assert rec.ok_payloads() == [2]
    assert await pending(redis_client, stream) == 0


async def test_duplicate_suppression_is_per_group(
    bus: Bus, make_consumer: Callable[..., Consumer], stream: str
) -> None:
    rec1, rec2 = Recorder(), Recorder()
    await bus.publish(stream, {"requestId": "r1", "n": 1})
    await make_consumer(rec1, key=by_request_id).burst()
    await make_consumer(rec2, key=by_request_id, group="portfolio").burst()
    assert rec1.ok_payloads() == [1] and rec2.ok_payloads() == [1]


async def test_failed_message_not_taken_for_a_duplicate_on_retry(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: RuntimeError("db down") if n == 1 else None)
    c = make_consumer(rec, key=by_request_id, max_failures=5)
    eid = await bus.publish(stream, {"requestId": "r1", "n": 1})
    await c.burst()
    assert rec.attempts[eid] == 2 and rec.ok_payloads() == [1]
    assert await redis_client.exists(c._idem_key("r1")) == 1
    assert await dlq_entries(redis_client, stream) == []


async def test_dead_lettered_message_key_not_marked_seen(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder(fail=lambda d, n: PoisonMessage("bad") if d.payload["n"] == 1 else None)
    c = make_consumer(rec, key=by_request_id)
    await bus.publish(stream, {"requestId": "r1", "n": 1})
    await c.burst()
    assert await redis_client.exists(c._idem_key("r1")) == 0
    await bus.publish(stream, {"requestId": "r1", "n": 2})  # a corrected resend is handled
    await c.burst()
    assert rec.ok_payloads() == [2]


# -- claims ----------------------------------------------------------------------------------
async def test_claims_messages_of_a_dead_consumer(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    patient = make_consumer(Recorder(), "patient")  # default claim_idle_ms: 30 s
    await patient.ensure_group()
    eid = await bus.publish(stream, {"n": 1})
    # Consumer "dead" reads the message and dies without acking it.
    got = await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)
    assert [e[0].decode() for e in got[0][1]] == [eid]
    assert await pending(redis_client, stream) == 1
    assert await patient.burst() == 0  # not idle long enough for it
    await asyncio.sleep(0.15)
    rec = Recorder()
    b = make_consumer(rec, "survivor", claim_idle_ms=100)
    assert await b.burst() == 1
    assert rec.ok_payloads() == [1] and rec.seen[0].id == eid
    assert await pending(redis_client, stream) == 0


async def test_claim_in_run_loop(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = Recorder()
    c = make_consumer(rec, "survivor", claim_idle_ms=100, block_ms=50)
    await c.ensure_group()
    await bus.publish(stream, {"n": 1})
    await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        await wait_for(lambda: rec.ok_payloads() == [1], within=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await pending(redis_client, stream) == 0


# -- the run loop and NOGROUP recovery -------------------------------------------------------
async def _run_loop_recovers(
    bus: Bus,
    make_consumer: Callable[..., Consumer],
    redis_client: aioredis.Redis,
    stream: str,
    lose_group: Callable[[], Awaitable[Any]],
) -> Recorder:
    rec = Recorder()
    c = make_consumer(rec, key=by_request_id, block_ms=100)
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        await bus.publish(stream, {"requestId": "r1", "n": 1})
        await wait_for(lambda: rec.ok_payloads() == [1])
        await asyncio.sleep(0.05)  # the loop is blocked in XREADGROUP now
        await lose_group()
        await asyncio.sleep(0.2)
        assert not task.done(), task.exception() if task.done() else None
        await bus.publish(stream, {"requestId": "r2", "n": 2})
        await wait_for(lambda: 2 in rec.ok_payloads())
        assert not task.done()
        assert c.healthy
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    groups = {g["name"].decode() for g in await redis_client.xinfo_groups(stream)}
    assert GROUP in groups
    return rec


async def test_run_loop_recreates_destroyed_group(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = await _run_loop_recovers(
        bus, make_consumer, redis_client, stream, lambda: redis_client.xgroup_destroy(stream, GROUP)
    )
    # The recreated group starts from 0; the idempotency key keeps r1 from being handled twice.
    assert rec.ok_payloads() == [1, 2]


async def test_run_loop_survives_flushdb(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    rec = await _run_loop_recovers(bus, make_consumer, redis_client, stream, redis_client.flushdb)
    assert rec.ok_payloads() == [1, 2]


async def test_run_loop_stops_promptly(make_consumer: Callable[..., Consumer]) -> None:
    c = make_consumer(Recorder(), block_ms=100)
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 2)


# -- requeue ---------------------------------------------------------------------------------
async def test_requeue_moves_dlq_entry_back_and_it_is_handled(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    broken = [True]
    rec = Recorder(fail=lambda d, n: PoisonMessage("dependency missing") if broken[0] else None)
    c = make_consumer(rec, key=by_request_id)
    await bus.publish(stream, {"requestId": "r1", "n": 1, "qty": "0.5"})
    await c.burst()
    [(dlq_id, entry)] = await dlq_entries(redis_client, stream)
    broken[0] = False  # the operator fixed the cause
    new_id = await requeue(redis_client, dlq_of(stream), dlq_id)
    assert new_id is not None and new_id != entry["id"]
    assert await redis_client.xlen(dlq_of(stream)) == 0
    await c.burst()
    assert [d.payload for d in rec.ok] == [{"requestId": "r1", "n": 1, "qty": "0.5"}]
    assert rec.ok[0].id == new_id
    assert await pending(redis_client, stream) == 0
    assert await requeue(redis_client, dlq_of(stream), dlq_id) is None  # gone


async def test_requeue_unknown_id(redis_client: aioredis.Redis, stream: str) -> None:
    assert await requeue(redis_client, dlq_of(stream), "1-0") is None


# -- metrics ---------------------------------------------------------------------------------
async def test_stream_pending_count_exported(
    bus: Bus, make_consumer: Callable[..., Consumer], redis_client: aioredis.Redis, stream: str
) -> None:
    c = make_consumer(Recorder())  # default claim_idle_ms: won't claim the dead consumer's messages
    await c.ensure_group()
    await bus.publish_many([(stream, {"n": i}) for i in range(3)])
    await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)
    await c.burst()
    labels = {"stream": stream, "group": GROUP}
    assert REGISTRY.get_sample_value("stream_pending_count", labels) == 3
    text = generate_latest(REGISTRY).decode()
    assert f'stream_pending_count{{group="{GROUP}",stream="{stream}"}} 3.0' in text


# -- the blocking read (busops.read_blocking) -----------------------------------------------------
async def test_blocking_read_runs_the_writes_first_and_an_error_leaves_the_connection_in_step(
    bus: Bus, redis_client: aioredis.Redis, stream: str
) -> None:
    await redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    args = (stream, GROUP, "c1", 10, ">", f"{stream}:idem:", "requestId")
    first = await redis_client.xadd(stream, {"data": b'{"n": 1}'})
    ops = busops.Ops()
    ops.set(f"{stream}:", "written-first", 60)
    got = await busops.read_blocking(bus.redis, ops, args, b"0-0", 1)
    assert got == ([(first, {b"data": b'{"n": 1}'})], [0], first)  # read to the end: its top
    assert await redis_client.exists(f"{stream}:written-first") == 1
    # an error in the writes (a wrong command) is raised after every reply is read: the next
    # read on the same connection gets its own reply, not one left behind
    bad = busops.Ops()
    bad._cmd("NOSUCHCOMMAND", "x")
    with pytest.raises(ResponseError, match="Unknown Redis command"):
        await busops.read_blocking(bus.redis, bad, args, first, 1)
    await redis_client.set(f"{stream}:idem:r2", 1)  # r2 handled before
    second = await redis_client.xadd(stream, {"data": b'{"requestId": "r2"}'})
    got = await busops.read_blocking(bus.redis, busops.Ops(), args, first, 1)
    assert got == ([(second, {b"data": b'{"requestId": "r2"}'})], [busops.SEEN], second)
    assert await busops.read_blocking(bus.redis, busops.Ops(), args, second, 1) == ([], [], second)  # timed out
    # a group that is gone: NOGROUP, as the consumer expects to recreate it
    with pytest.raises(ResponseError, match="NOGROUP"):
        await busops.read_blocking(bus.redis, busops.Ops(), (stream, "nogroup", *args[2:]), second, 1)


async def test_blocking_read_wakes_on_a_new_entry_and_reads_it_with_its_key(
    bus: Bus, redis_client: aioredis.Redis, stream: str
) -> None:
    await redis_client.xgroup_create(stream, GROUP, id="$", mkstream=True)
    args = (stream, GROUP, "c1", 10, ">", f"{stream}:idem:", "requestId")
    assert await busops.read(bus.redis, args, busops.Ops()) == ([], [], b"0-0")  # empty stream
    waiting = asyncio.create_task(busops.read_blocking(bus.redis, busops.Ops(), args, b"0-0", 10_000))
    await wait_for_async(lambda: blocked_in_xread(redis_client))
    await redis_client.set(f"{stream}:idem:r1", 1)
    eid = await redis_client.xadd(stream, {"data": b'{"requestId": "r1"}'})
    entries, flags, top = await asyncio.wait_for(waiting, 5)  # not the 10 s of the wait
    assert [e for e, _ in entries] == [eid] and flags == [busops.SEEN] and top == eid
    # an entry after the top given to another consumer of the group wakes the wait for nothing:
    # READ finds no entry for this one and reports the new top
    other = await redis_client.xadd(stream, {"data": b'{"requestId": "r2"}'})
    await redis_client.xreadgroup(GROUP, "c2", {stream: ">"})
    assert await busops.read_blocking(bus.redis, busops.Ops(), args, eid, 10_000) == ([], [], other)
    # an entry that arrived before the wait began (after the top) is read at once
    late = await redis_client.xadd(stream, {"data": b'{"requestId": "r3"}'})
    got = await asyncio.wait_for(busops.read_blocking(bus.redis, busops.Ops(), args, other, 10_000), 5)
    assert got == ([(late, {b"data": b'{"requestId": "r3"}'})], [0], late)
