"""Integration: two notification-manager pipelines share the `notify` group (as with
`docker-compose up -d --scale notification-manager=2`). A run of the same P0 alert and a
repeated P2 alert, handled by both in turn, come out once: one incident, one initial alert per
channel, one escalation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.support.notify_pipeline import pipeline
from tests.support.receivers import Mailbox, Receiver, policy

from cli_trading.notify import oncall

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
