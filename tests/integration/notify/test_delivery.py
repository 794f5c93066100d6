"""Integration: real deliveries through apprise to a local HTTP receiver (Slack-format and JSON
webhooks) and a local SMTP server; throttling; a failing receiver driving retries, the DLQ and a
requeue that delivers. Real Redis (DB 12), SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli_trading.bus import requeue
from cli_trading.contracts import Stream, dlq_of
from cli_trading.db import notify_repo
from tests.support.notify_pipeline import Pipeline, pipeline
from tests.support.receivers import Mailbox, Receiver, policy

pytestmark = pytest.mark.integration


@pytest.fixture
async def pipe(
    sessions: Any,
    receiver: Receiver,
    mailbox: Mailbox,
    tmp_path: Path,
    redis_client: Any, redis_url: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Pipeline]:
    overrides = getattr(request, "param", {})
    p = await pipeline(redis_url, sessions, policy(receiver, mailbox, **overrides), tmp_path)
    yield p
    await p.close()


async def _rows(p: Pipeline, trace_id: str) -> list[Any]:
    async with p.incidents.sessions() as s:
        return await notify_repo.notifications(s, trace_id=trace_id)


async def test_security_halt_pages_everyone_in_the_runbook_matrix(
    pipe: Pipeline, receiver: Receiver, mailbox: Mailbox
) -> None:
    trace = await pipe.publish(
        "halt.security_incident",
        message="Trading halted: security_incident",
        reason="security_incident",
        actor="tok:abc",
        agent="orchestrator",
    )
    await pipe.drain()
    for path in ("/slack/trading-critical", "/slack/security-immediate"):
        (text,) = receiver.text(path)
        assert text.startswith("🚨 INCIDENT ALERT 🚨\nSeverity: P0\nService: CLI-Trading\n")
        assert "Issue: Trading halted: security incident" in text and "Status: INVESTIGATING" in text
        assert set(receiver.bodies(path)[0]) == {"text"}  # Slack's webhook format
    (pd,) = receiver.bodies("/pagerduty")  # apprise's JSON webhook format
    assert pd["title"].startswith("[P0]") and "Severity: P0" in pd["message"]
    for rcpt in ("security@company.com", "trading-oncall@company.com"):
        (mail,) = mailbox.to(rcpt)
        assert "INCIDENT ALERT" in mail and "Contact: On-call Engineer" in mail
    assert not receiver.text("/slack/trading-alerts")
    rows = await _rows(pipe, trace)
    assert sorted(r.channel for r in rows) == sorted(
        ["trading-critical", "pagerduty", "mail-oncall", "security-immediate", "mail-security"]
    )
    assert {r.status for r in rows} == {"sent"} and {r.severity for r in rows} == {"P0"}
    (inc,) = await pipe.incidents.listing(state="open", limit=5)
    assert (inc["severity"], inc["category"], inc["status"]) == ("P0", "security", "INVESTIGATING")


@pytest.mark.parametrize("pipe", [{"throttle_seconds": 1}], indirect=True)
async def test_repeats_are_throttled_and_counted(pipe: Pipeline, receiver: Receiver) -> None:
    traces = [await pipe.publish("metrics.latency", "warning", "p95 7.2 s", seconds=7.2) for _ in range(3)]
    await pipe.drain()
    assert len(receiver.text("/slack/trading-alerts")) == 1 and len(receiver.text("/slack/ops-team")) == 1
    assert {r.status for t in traces[1:] for r in await _rows(pipe, t)} == {"throttled"}
    import asyncio

    await asyncio.sleep(1.1)
    await pipe.publish("metrics.latency", "warning", "p95 6.1 s", seconds=6.1)
    await pipe.drain()
    later = receiver.text("/slack/trading-alerts")[-1]
    assert "(+2 similar alerts suppressed)" in later and "Severity: P2" in later


async def test_failed_delivery_is_retried_dead_lettered_and_delivered_after_requeue(
    sessions: Any, receiver: Receiver, mailbox: Mailbox, tmp_path: Path, redis_client: Any, redis_url: str
) -> None:
    doc = policy(receiver, mailbox)
    doc["channels"]["trading-alerts"]["url"] = receiver.url("/fail/trading-alerts", slack=True)
    p = await pipeline(redis_url, sessions, doc, tmp_path, max_failures=3)
    try:
        trace = await p.publish("metrics.latency", "warning", "p95 9 s", seconds=9)
        await p.drain(until_dlq=1)
        ((entry_id, fields),) = await p.bus.redis.xrange(dlq_of(Stream.NOTIFY))
        entry = orjson.loads(fields[b"data"])
        assert entry["failures"] == 3 and "DeliveryFailed" in entry["error"]
        assert str(receiver.port) not in entry["error"]  # the webhook URL never leaks
        assert len(receiver.text("/slack/ops-team")) == 1  # reached once, not on every retry
        failed = [r for r in await _rows(p, trace) if r.status == "failed"]
        assert len(failed) == 3 and all(r.attempts == 2 and str(receiver.port) not in r.error for r in failed)
        assert "Connection error" in failed[0].error or "500" in failed[0].error

        receiver.failing = False
        assert await requeue(p.bus.redis, dlq_of(Stream.NOTIFY), entry_id.decode())
        await p.drain()
        (text,) = receiver.text("/fail/trading-alerts")
        assert "Severity: P2" in text and "9 s response time" in text
        assert len(receiver.text("/slack/ops-team")) == 1
        assert "sent" in {r.status for r in await _rows(p, trace) if r.channel == "trading-alerts"}
        assert await p.bus.redis.xlen(dlq_of(Stream.NOTIFY)) == 0
    finally:
        await p.close()


async def test_unconfigured_channels_are_recorded_not_fatal(
    sessions: Any, receiver: Receiver, mailbox: Mailbox, tmp_path: Path, redis_client: Any, redis_url: str
) -> None:
    doc = policy(receiver, mailbox)
    for name in ("pagerduty", "mail-oncall"):
        doc["channels"][name] = {"label": name, "env": "CT_NOTIFY_TEST_UNSET"}
    p = await pipeline(redis_url, sessions, doc, tmp_path)
    try:
        trace = await p.publish("halt.daily_loss_limit", reason="daily_loss_limit")
        await p.drain()
        status = {r.channel: r.status for r in await _rows(p, trace)}
        assert status == {"trading-critical": "sent", "pagerduty": "not_configured", "mail-oncall": "not_configured"}
    finally:
        await p.close()
