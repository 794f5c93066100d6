"""Redis Streams bus: publishing, and the consumer with groups, retries, DLQ, claims and
idempotency. This is the one piece of plumbing no library does the way we need it.

Consumer semantics (design brief):
- XREADGROUP in a group shared by every instance of an agent;
- a message whose stable key (requestId / orderId) was already handled by the group is acked and
  skipped; the key is written only after success, so a failure is never taken for a duplicate.
  The key is read from the raw payload, before the handler validates it into its contracts.py
  model: Redis reads it in the same call as the batch (busops.READ). It is the model's own string
  field, kept as it is by validation (docs/architecture.md, "Delivery and effects");
- a failing message stays pending and is retried from the consumer's own pending list with
  backoff; after `max_failures` it moves to `<stream>.dlq` and is acked, atomically;
- an undecodable message goes to the DLQ at once;
- messages left pending by a dead consumer are claimed with XAUTOCLAIM after `claim_idle_ms`;
- a group lost by Redis (NOGROUP) is recreated;
- blocking reads use their own connection;
- a batch's writes (acks, idempotency keys, outputs, DLQ entries) run atomically in one Lua call
  that shares the round trip of the next XREADGROUP; while messages are waiting, that call also
  reads the next batch and says which of its keys were handled before (busops.READ): one round
  trip per batch. With nothing waiting, the same round trip holds a blocking XREAD of the stream
  after the last entry the group was given, then READ: Redis runs READ as soon as an entry
  arrives (busops.read_blocking), so a batch's keys are never asked for separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli_trading import metrics
from cli_trading.busops import ATOMIC as _ATOMIC
from cli_trading.busops import (
    SEEN,
    UNKNOWN,
    Entry,
    connect,
    count_failures,
    encode,
    key_of,
    pipelined,
    read,
    read_blocking,
)
from cli_trading.busops import Ops as _Ops
from cli_trading.contracts import INFLIGHT_KEY, dlq_of, iso
from cli_trading.faults import is_outage
from cli_trading.logs import get_logger
from cli_trading.streamops import TRIM_INTERVAL_S, trim_consumed
from cli_trading.streamops import requeue as requeue  # the DLQ admin's, here for its importers

log = get_logger("bus")
# Streams are trimmed by consumption (streamops.py), never capped by length when written:
# kept for writers elsewhere that still cap (a stream they write is also trimmed by consumption)
STREAM_MAXLEN = 100_000
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class Bus:
    """Publishing side plus the shared command connection.

    `publish` coalesces: every publish made in the same event-loop iteration goes out in one
    round trip (busops.pipelined), and each caller resumes once its message is in Redis. Under
    load (many HTTP requests per iteration) that is one round trip for all of them instead of one
    each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = connect(url)
        self._pending: list[tuple[str, bytes, asyncio.Future[str]]] = []
        self._flusher: asyncio.Future[None] | None = None  # a reference: the loop keeps tasks weakly

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), 2))
        except (TimeoutError, *REDIS_DOWN):
            return False

    async def publish(self, stream: str, payload: BaseModel | dict[str, Any]) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, encode(payload), fut))
        if len(self._pending) == 1:
            self._flusher = asyncio.ensure_future(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the rest of this iteration's publishers join
        batch, self._pending = self._pending, []
        try:  # no length cap: trimmed by consumption
            ids = await pipelined(self.redis, [("XADD", stream, "*", "data", data) for stream, data, _ in batch])
        except asyncio.CancelledError:
            for *_, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every waiting publisher gets the error
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (*_, fut), eid in zip(batch, ids, strict=True):
            if fut.done():
                continue
            if isinstance(eid, ResponseError):
                fut.set_exception(eid)  # this stream's (a key of another type): its publisher's alone
            else:
                fut.set_result(eid.decode())

    async def publish_many(self, items: Sequence[tuple[str, BaseModel | dict[str, Any]]]) -> None:
        await asyncio.gather(*(self.publish(stream, payload) for stream, payload in items))  # one pipeline

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass(slots=True)
class Delivery:
    stream: str
    id: str
    payload: dict[str, Any]


class PoisonMessage(Exception):
    """A message that can never succeed (wrong shape): dead-lettered at once, not retried."""


MessageResult = BaseException | None
Outgoing = tuple[str, BaseModel | dict[str, Any]]  # (stream, payload)


@dataclass(slots=True)
class Handled:
    """What a batch handler may return instead of bare outcomes: messages to publish, and
    `inflight_done` order ids to take out of the in-flight set, in the same atomic call as the acks.
    A crash can then never leave a message acked without its outputs (or the reverse)."""

    outcomes: Sequence[MessageResult]
    emit: Sequence[Outgoing] = ()
    inflight_done: Sequence[str] = ()


BatchHandler = Callable[[list[Delivery]], Awaitable[Sequence[MessageResult] | Handled]]
MessageHandler = Callable[[Delivery], Awaitable[None]]


def per_message(fn: MessageHandler) -> BatchHandler:
    """Adapt a one-message handler to the batch interface; each message fails on its own."""

    async def handle(batch: list[Delivery]) -> list[MessageResult]:
        out: list[MessageResult] = []
        for d in batch:
            try:
                await fn(d)
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - the consumer decides retry or DLQ
                if is_outage(exc):
                    raise  # not this message's fault: the whole batch waits for the dependency
                out.append(exc)
        return out

    return handle


M = TypeVar("M", bound=BaseModel)


def decoded(model: type[M], batch: Sequence[Delivery]) -> list[M | PoisonMessage]:
    """Each message of a batch as its contract model, or the `PoisonMessage` it is (wrong shape)."""
    out: list[M | PoisonMessage] = []
    for d in batch:
        try:
            out.append(model.model_validate(d.payload))
        except ValidationError as exc:
            out.append(PoisonMessage(f"invalid {model.__name__}: {exc.errors()[0]['msg']}"))
    return out


def valid(msgs: Sequence[M | PoisonMessage]) -> list[M]:
    return [m for m in msgs if not isinstance(m, PoisonMessage)]


def failures(msgs: Sequence[BaseModel | PoisonMessage]) -> list[MessageResult]:
    """The batch's outcomes when only the wrong-shaped messages failed."""
    return [m if isinstance(m, PoisonMessage) else None for m in msgs]


class Consumer:
    """One consumer in a group. `run()` loops until `stop` is set; `burst()` processes what is
    there now and returns (for tests and for draining)."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        name: str,
        handler: BatchHandler,
        *,
        key: str | None = None,
        batch: int = 200,
        block_ms: int = 500,
        max_failures: int = 5,
        retry_backoff_s: float = 0.2,
        claim_idle_ms: int = 30_000,
        idem_ttl_s: int = 300,
        start_id: str = "0",
    ) -> None:
        self.bus, self.stream, self.group, self.name = bus, stream, group, name
        self.handler, self.key = handler, key
        self.batch, self.block_ms = batch, block_ms
        self.max_failures, self.retry_backoff_s = max_failures, retry_backoff_s
        self.claim_idle_ms, self.idem_ttl_s, self.start_id = claim_idle_ms, idem_ttl_s, start_id
        self.dlq = dlq_of(stream)
        self._idem_prefix = f"cli-trading:idem:{stream}:{group}:"
        self._reader = connect(bus.url)  # blocking reads never starve the command connection
        self._retry_at = 0.0  # own pending list to be re-read at or after this monotonic time
        self._next_claim = 0.0
        self._next_gauge = 0.0
        self._next_trim = time.monotonic() + TRIM_INTERVAL_S
        self.healthy = False
        self._unsettled = _Ops()  # the last batch's writes, sent with the next read (one round trip)
        self._backlog = False  # the last read found several messages: more are likely waiting
        self._top: bytes | None = None  # every entry up to this id is delivered to the group
        self.stalled: str | None = None  # why the last batch could not be handled, until one is
        self._stalls = 0
        self.handled = 0

    # -- keys ------------------------------------------------------------------------------
    def _idem_key(self, k: str) -> str:
        return self._idem_prefix + k

    @property
    def _fail_key(self) -> str:
        return f"cli-trading:failures:{self.stream}:{self.group}"

    # -- lifecycle -------------------------------------------------------------------------
    async def ensure_group(self) -> None:
        try:
            await self.bus.redis.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                if not self.healthy:
                    await self.ensure_group()
                    self.healthy = True
                    self._retry_at = 0.0  # re-read what we held before the outage
                    self._top = None  # a recreated group starts again: read before waiting
                await self._step(block=True)
                backoff = 0.2
            except ResponseError as exc:
                # NOGROUP: the group was destroyed; UNBLOCKED: the stream key was deleted (FLUSHDB,
                # DEL) while we were blocked in XREADGROUP. Either way: recreate and carry on.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                log.warning("group lost, recreating", stream=self.stream, group=self.group)
                self.healthy = False
            except REDIS_DOWN as exc:
                if self.healthy:
                    log.error("redis unreachable", stream=self.stream, error=str(exc))
                self.healthy = False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
        with contextlib.suppress(ResponseError, *REDIS_DOWN):  # unsettled: redelivered, then skipped
            await self.settle()

    async def burst(self) -> int:
        """Handle everything deliverable now (own pending first, then new); return the count."""
        await self.ensure_group()
        self.healthy = True
        total = 0
        while True:
            n = await self._step(block=False)
            total += n
            if n == 0:
                await self.settle()
                return total

    async def close(self) -> None:
        await self._reader.aclose()

    # -- one step --------------------------------------------------------------------------
    async def _step(self, *, block: bool) -> int:
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(self.claim_idle_ms / 4000, 0.5)
            if await self._claim():
                self._retry_at = 0.0
        if now >= self._next_gauge:
            self._next_gauge = now + 2.0
            await self._export_pending()
        if now >= self._next_trim:  # the stream is trimmed by consumption (streamops.py)
            self._next_trim = now + TRIM_INTERVAL_S
            await trim_consumed(self.bus.redis, self.stream)
        entries: list[Entry] = []
        flags: list[int] = []
        if now >= self._retry_at:
            entries, flags = await self._read("0")
            if not entries:
                self._retry_at = float("inf")
        if not entries:
            wait = self.block_ms if block else None
            if block and self._retry_at != float("inf"):
                wait = max(1, min(self.block_ms, int((self._retry_at - now) * 1000)))
            entries, flags = await self._read(">", block_ms=wait)
        if entries:
            await self._process(entries, flags)
        return len(entries)

    async def _read(self, from_id: str, block_ms: int | None = None) -> tuple[list[Entry], list[int]]:
        """The next entries and whether each key was handled before (busops.READ's flags), after
        the last batch's writes in the same round trip. A read that may block reads at once only
        while messages are likely waiting (else it is one more round trip before blocking), or
        to learn the stream's top; it then waits for an entry after that top and reads it, keys
        looked up, still in one round trip (busops.read_blocking)."""
        ops, self._unsettled = self._unsettled, _Ops()
        args = (self.stream, self.group, self.name, self.batch, from_id, self._idem_prefix, self.key or "")
        if block_ms is None or self._backlog or self._top is None:
            entries, flags, top = await read(self._reader, args, ops)
            self._noted(entries, top)
            if entries or block_ms is None:
                return entries, flags
            ops = _Ops()  # run by READ
        top = self._top or b"0-0"  # a read of new entries that found none has reported it
        entries, flags, top = await read_blocking(self._reader, ops, args, top, block_ms)
        self._noted(entries, top)
        return entries, flags

    def _noted(self, entries: list[Entry], top: bytes | None) -> None:
        self._backlog = len(entries) > 1
        if top is not None:
            self._top = top

    async def settle(self) -> None:
        """Run the last batch's writes now (when no read follows: a burst's end, stopping)."""
        ops, self._unsettled = self._unsettled, _Ops()
        if ops:
            await self.bus.redis.execute_command("EVAL", _ATOMIC, 0, *ops.args)

    async def _claim(self) -> int:
        _, claimed, *_ = await self.bus.redis.xautoclaim(
            self.stream, self.group, self.name, min_idle_time=self.claim_idle_ms, count=self.batch
        )
        if claimed:
            log.info("claimed pending messages", stream=self.stream, group=self.group, count=len(claimed))
        return len(claimed)

    async def _export_pending(self) -> None:
        info = await self.bus.redis.xpending(self.stream, self.group)
        metrics.STREAM_PENDING.labels(self.stream, self.group).set(info["pending"])

    async def _process(self, entries: list[Entry], flags: list[int]) -> None:
        good: list[Delivery] = []
        good_flags: list[int] = []
        ops = self._unsettled
        for n, (raw_id, fields) in enumerate(entries):
            eid = raw_id.decode()
            if not fields:  # trimmed away while pending: nothing to do but ack
                ops.xack(self.stream, self.group, eid)
                continue
            try:
                payload = orjson.loads(fields[b"data"])
                if not isinstance(payload, dict):
                    raise ValueError("payload is not a JSON object")
            except (KeyError, ValueError) as exc:
                raw = fields.get(b"data", b"").decode(errors="replace")
                self._dead_letter(ops, eid, raw, f"undecodable: {exc}", 1)
                continue
            good.append(Delivery(self.stream, eid, payload))
            good_flags.append(flags[n])
        if good:
            await self._handle(good, good_flags)

    async def _handle(self, batch: list[Delivery], flags: list[int]) -> None:
        keys = [key_of(d.payload, self.key) for d in batch]
        seen = await self._seen(keys, flags)
        first: set[str] = set()  # a key twice in one batch: only its first occurrence is handled
        for i, k in enumerate(keys):
            if k and not seen[i]:
                seen[i] = k in first
                first.add(k)
        fresh = [d for d, dup in zip(batch, seen, strict=True) if not dup]
        try:
            handled = await self.handler(fresh) if fresh else []
        except (RedisConnectionError, RedisTimeoutError):
            raise  # Redis itself: the run loop waits for it
        except Exception as exc:  # noqa: BLE001 - a dependency outage, or a bug: never crash
            self._stall(exc)
            return
        self.stalled, self._stalls = None, 0
        if not isinstance(handled, Handled):
            handled = Handled(handled)
        results = handled.outcomes
        by_id = {d.id: res for d, res in zip(fresh, results, strict=True)}
        failed = [(d, by_id[d.id]) for d in fresh if by_id[d.id] is not None]
        counts = await self._count_failures([d.id for d, _ in failed])
        # settled atomically with the next read's round trip (`_read`), or by `settle()`
        ops = self._unsettled
        for d, k, dup in zip(batch, keys, seen, strict=True):
            if dup or by_id.get(d.id) is None:
                ops.xack(self.stream, self.group, d.id)
                if k and not dup:
                    ops.set(self._idem_prefix, k, self.idem_ttl_s)
        if ok_ids := [d.id for d in fresh if by_id[d.id] is None]:
            ops.hdel(self._fail_key, *ok_ids)  # failure counts of earlier attempts: done with
        for (d, err), n in zip(failed, counts, strict=True):
            if n >= self.max_failures or isinstance(err, PoisonMessage):
                self._dead_letter(ops, d.id, d.payload, f"{type(err).__name__}: {err}", n)
                ops.hdel(self._fail_key, d.id)
        for stream, payload in handled.emit:
            ops.xadd(stream, encode(payload))
        if handled.inflight_done:
            ops.srem(INFLIGHT_KEY, *handled.inflight_done)
        self.handled += len(batch)
        metrics.MESSAGES_HANDLED.labels(self.stream, self.group, "ok").inc(len(batch) - len(failed))
        if failed:
            metrics.MESSAGES_HANDLED.labels(self.stream, self.group, "error").inc(len(failed))
            for d, err in failed:
                log.warning("message failed", stream=self.stream, group=self.group, id=d.id, error=repr(err))
            self._retry_at = time.monotonic() + self.retry_backoff_s * min(max(counts), 10)

    def _stall(self, exc: Exception) -> None:
        """The handler raised instead of judging each message: nothing is acked or counted
        against the messages; they stay pending and are read again after a growing backoff
        (database outages end here). The consumer reports itself unhealthy meanwhile."""
        self._stalls += 1
        self.stalled = f"{type(exc).__name__}: {str(exc)[:200]}"
        delay = min(self.retry_backoff_s * 2 ** min(self._stalls, 5), 5.0)
        self._retry_at = time.monotonic() + max(delay, 0.05)
        metrics.MESSAGES_HANDLED.labels(self.stream, self.group, "stalled").inc()
        log.error(
            "batch not handled, will retry",
            stream=self.stream,
            group=self.group,
            error=self.stalled,
            outage=is_outage(exc),
            retryInS=round(delay, 2),
        )

    async def _seen(self, keys: list[str | None], flags: list[int]) -> list[bool]:
        """Whether each key was handled by the group before: as the read said (busops.READ), or
        asked of Redis where it could not say."""
        seen = [f == SEEN for f in flags]
        if ask := [(i, k) for i, k in enumerate(keys) if k and flags[i] == UNKNOWN]:
            found = await self.bus.redis.mget([self._idem_key(k) for _, k in ask])
            for (i, _), v in zip(ask, found, strict=True):
                seen[i] = bool(v)
        return seen

    async def _count_failures(self, ids: list[str]) -> list[int]:
        return await count_failures(self.bus.redis, self._fail_key, ids)

    def _dead_letter(self, ops: _Ops, eid: str, payload: Any, error: str, failures: int) -> None:
        entry = {"originalStream": self.stream, "group": self.group, "id": eid, "payload": payload}
        ops.xadd(self.dlq, encode({**entry, "error": error[:2000], "failures": failures, "ts": iso()}))
        ops.xack(self.stream, self.group, eid)
        metrics.DLQ_MESSAGES.labels(self.stream).inc()
        log.error("message dead-lettered", stream=self.stream, group=self.group, id=eid, error=error[:300])
