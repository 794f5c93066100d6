"""Integration: two notification-manager pipelines share the `notify` group (as with
`docker-compose up -d --scale notification-manager=2`). A run of the same P0 alert and a
repeated P2 alert, handled by both in turn and by both reading at once, come out once: one incident, one initial
alert per channel, one escalation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cli_trading.contracts import Group, Stream
from cli_trading.notify import oncall
from tests.support.notify_pipeline import pipeline
from tests.support.receivers import Mailbox, Receiver, policy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sessions", ["sqlite"], indirect=True)
async def test_two_instances_share_the_work_without_duplicates(
    sessions: Any, receiver: Receiver, mailbox: Mailbox, tmp_path: Path, redis_client: Any, redis_url: str
) -> None:
    doc = policy(receiver, mailbox, throttle_seconds=300)
    a = await pipeline(redis_url, sessions, doc, tmp_path, name="nm-1")
    b = await pipeline(redis_url, sessions, doc, tmp_path, name="nm-2", clock=a.clock)
    try:
        for n in range(10):  # the instances take turns, as two consumers in one group do
            if n < 6:
                await a.publish(
                    "halt.emergency_stop", message="Trading halted: emergency_stop", reason="emergency_stop"
                )
            else:
                await a.publish("metrics.latency", "warning", f"slow {n}", seconds=6)
            await (a if n % 2 else b).drain()
        assert a.consumer.handled == b.consumer.handled == 5

        (inc,) = await a.incidents.listing(state=None, limit=10)
        alerts = [t for t in receiver.text("/slack/trading-critical") if t.startswith("🚨 INCIDENT ALERT")]
        assert len(alerts) == 1 and len(receiver.text("/pagerduty")) == 1
        assert len(receiver.text("/slack/trading-alerts")) == 1  # the latency repeats: throttled across instances
        timeline = (await a.incidents.get(inc["id"]))["timeline"]
        assert [e["kind"] for e in timeline].count("halt") == 6  # every repeat joined, none opened another

        a.clock.advance(minutes=5)
        await asyncio.gather(oncall.run_due(a.incidents), oncall.run_due(b.incidents))
        await a.drain()
        assert len(mailbox.wait("engineering-mgmt@company.com")) == 1
        await asyncio.sleep(0.5)
        assert len(mailbox.to("engineering-mgmt@company.com")) == 1  # escalated once, not once per instance
    finally:
        await a.close()
        await b.close()


async def _both_blocked_reading(redis: Any) -> bool:
    """Both consumers are waiting on the stream (a blocking XREAD) right now (so new events wake
    both of them); the test's Redis server is private to this test session, no one else reads
    from it."""
    clients = await redis.client_list()
    return sum(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in clients) >= 2


@pytest.mark.parametrize("sessions", ["sqlite", "postgresql"], indirect=True)
async def test_two_consumers_running_at_once_handle_each_event_once(
    sessions: Any, receiver: Receiver, mailbox: Mailbox, tmp_path: Path, redis_client: Any, redis_url: str
) -> None:
    """Two consumers of the group read concurrently (one event per read, as under load), each
    on its own Redis connections: every event is handled exactly once, by one of them, and the
    P0 repeats still make one incident and one alert per channel."""
    doc = policy(receiver, mailbox, throttle_seconds=300)
    a = await pipeline(redis_url, sessions, doc, tmp_path, name="nm-1", batch=1)
    b = await pipeline(redis_url, sessions, doc, tmp_path, name="nm-2", clock=a.clock, batch=1)
    stop = asyncio.Event()
    running = [asyncio.create_task(p.consumer.run(stop)) for p in (a, b)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20  # generous: a loaded CI machine, not luck
        while not await _both_blocked_reading(redis_client):
            assert loop.time() < deadline, "the two consumers never both waited on the stream"
            await asyncio.sleep(0.02)
        for _ in range(8):
            await a.publish("halt.emergency_stop", message="Trading halted: emergency_stop", reason="emergency_stop")
        for n in range(4):
            await a.publish("metrics.latency", "warning", f"slow {n}", seconds=6)

        while a.consumer.handled + b.consumer.handled < 12:
            assert loop.time() < deadline + 40, (a.consumer.handled, b.consumer.handled)
            await asyncio.sleep(0.05)
        assert a.consumer.handled >= 1 and b.consumer.handled >= 1, (a.consumer.handled, b.consumer.handled)
        assert a.consumer.handled + b.consumer.handled == 12  # none handled twice
        assert (await a.bus.redis.xpending(Stream.NOTIFY, Group.NOTIFY))["pending"] == 0

        (inc,) = await a.incidents.listing(state=None, limit=10)
        timeline = (await a.incidents.get(inc["id"]))["timeline"]
        assert [e["kind"] for e in timeline].count("halt") == 8
        alerts = [t for t in receiver.text("/slack/trading-critical") if t.startswith("🚨 INCIDENT ALERT")]
        assert len(alerts) == 1 and len(receiver.text("/pagerduty")) == 1
        assert len(receiver.text("/slack/trading-alerts")) == 1  # the latency repeats throttled across both
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        await a.close()
        await b.close()
