"""The notification pipeline assembled as the agent assembles it, on real Redis and a real
database, with a clock the test moves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli_trading.bus import Bus, Consumer, per_message
from cli_trading.config import load_settings
from cli_trading.contracts import Group, NotifyEvent, Stream, dlq_of
from cli_trading.notify import config
from cli_trading.notify.channels import Sender
from cli_trading.notify.dispatch import Dispatcher
from cli_trading.notify.incidents import Incidents
from tests.support.receivers import write_policy


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Pipeline:
    bus: Bus
    incidents: Incidents
    dispatcher: Dispatcher
    consumer: Consumer
    clock: Clock

    async def publish(self, type_: str, severity: str = "critical", message: str = "", **context: Any) -> str:
        ev = NotifyEvent(
            type=type_, severity=severity, message=message or type_, context=context, ts=self.clock().isoformat()
        )
        await self.bus.publish(Stream.NOTIFY, ev)
        return ev.traceId

    async def drain(self, *, until_dlq: int | None = None, wait_s: float = 30) -> None:
        """Consume until nothing is left (pending retries included) or the DLQ holds `until_dlq`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            await self.consumer.burst()
            pending = (await self.bus.redis.xpending(Stream.NOTIFY, Group.NOTIFY))["pending"]
            dlq = await self.bus.redis.xlen(dlq_of(Stream.NOTIFY))
            if (until_dlq is not None and dlq >= until_dlq) or (until_dlq is None and not pending):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("notify.events not drained in time")

    async def close(self) -> None:
        await self.consumer.close()
        await self.bus.close()


async def pipeline(
    redis_url: str,
    sessions: Any,
    doc: dict[str, Any],
    tmp_path: Path,
    *,
    max_failures: int = 3,
    name: str = "test-1",
    clock: Clock | None = None,
    batch: int = 200,
) -> Pipeline:
    cfg = config.load(load_settings(notify_config=str(write_policy(tmp_path / "notifications.yaml", doc))))
    clock = clock or Clock()
    bus = Bus(redis_url)

    async def publish(ev: NotifyEvent) -> str:
        return await bus.publish(Stream.NOTIFY, ev)

    incidents = Incidents(cfg=cfg, sessions=sessions, redis=bus.redis, publish=publish, clock=clock)
    dispatcher = Dispatcher(
        cfg=cfg, sessions=sessions, redis=bus.redis, incidents=incidents, sender=Sender(cfg), clock=clock
    )
    consumer = Consumer(
        bus,
        Stream.NOTIFY,
        Group.NOTIFY,
        name,
        per_message(lambda d: dispatcher.handle(d.payload)),
        key="traceId",
        max_failures=max_failures,
        retry_backoff_s=0.01,
        batch=batch,
    )
    await consumer.ensure_group()
    return Pipeline(bus, incidents, dispatcher, consumer, clock)
