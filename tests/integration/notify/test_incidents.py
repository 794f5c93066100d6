"""Integration: incidents on an injected clock — opened by a P0 event, joined by its repeat,
escalated along the runbook's matrix when not acknowledged in time, reminded for status updates,
mitigated by the unhalt, resolved; each step delivered with the runbook's template to real
receivers; the timeline and durations the post-mortem uses. Real Redis (DB 12), SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cli_trading.notify import oncall, postmortem
from cli_trading.notify.dispatch import recent
from cli_trading.notify.metrics import INCIDENTS_OPEN
from tests.support.notify_pipeline import Pipeline, pipeline
from tests.support.receivers import Mailbox, Receiver, policy

pytestmark = pytest.mark.integration
CRITICAL = "/slack/trading-critical"


@pytest.fixture
async def pipe(
    sessions: Any, receiver: Receiver, mailbox: Mailbox, tmp_path: Path, redis_client: Any, redis_url: str
) -> AsyncIterator[Pipeline]:
    doc = policy(receiver, mailbox, throttle_seconds=300, status_update_minutes=30)
    p = await pipeline(redis_url, sessions, doc, tmp_path)
    yield p
    await p.close()


async def tick(p: Pipeline, **advance: float) -> None:
    p.clock.advance(**advance)
    await oncall.run_due(p.incidents)
    await p.drain()


async def test_unacknowledged_p0_escalates_primary_secondary_management(
    pipe: Pipeline, receiver: Receiver, mailbox: Mailbox
) -> None:
    await pipe.publish(
        "halt.emergency_stop", message="Trading halted: emergency_stop", reason="emergency_stop", actor="tok:1"
    )
    await pipe.drain()
    (inc,) = await pipe.incidents.listing(state="open", limit=5)
    assert inc["commander"] == "On-call Engineer" and inc["escalationLevel"] == 0
    mailbox.wait("trading-oncall@company.com", contains="INCIDENT ALERT")  # primary: the initial alert

    await tick(pipe, minutes=4, seconds=59)
    assert not mailbox.to("engineering-mgmt@company.com")
    await tick(pipe, seconds=1)  # 5 minutes: P0 response time missed → Engineering Manager
    (mail,) = mailbox.wait("engineering-mgmt@company.com", contains="ESCALATED")
    assert "Engineering Manager" in mail and "not acknowledged after 5m 00s" in mail
    await tick(pipe, seconds=30)  # nothing new before the next period
    assert len(mailbox.to("engineering-mgmt@company.com")) == 1
    await tick(pipe, minutes=5)  # 10 minutes → CTO (management)
    assert "CTO" in mailbox.wait("engineering-mgmt@company.com", 2)[-1]
    assert (await pipe.incidents.get(inc["id"]))["escalationLevel"] == 2

    await pipe.incidents.ack(inc["id"], actor="alice", commander="alice")
    await tick(pipe, minutes=60)
    assert len(mailbox.to("engineering-mgmt@company.com")) == 2  # acknowledged: no further escalation
    kinds = [e["kind"] for e in (await pipe.incidents.get(inc["id"]))["timeline"]]
    assert kinds.count("escalation") == 2 and "ack" in kinds


async def test_acknowledged_in_time_does_not_escalate_and_reminders_follow_silence(
    pipe: Pipeline, receiver: Receiver, mailbox: Mailbox
) -> None:
    await pipe.publish("agent.down", message="risk-manager is down", agent="risk-manager", category="infrastructure")
    await pipe.drain()
    (inc,) = await pipe.incidents.listing(state="open", limit=5)
    assert (inc["severity"], inc["category"]) == ("P1", "infrastructure")
    receiver.wait("/slack/ops-team", contains="Agent down: risk-manager")
    await tick(pipe, minutes=10)
    trace = next(e["traceId"] for e in await recent(pipe.bus.redis) if e["type"] == "agent.down")
    acked = await pipe.incidents.ack_trace(trace, actor="bob")  # POST /admin/notify/ack {"traceId": …}
    assert acked["id"] == inc["id"] and acked["commander"] == "bob" and acked["timeToRespondSeconds"] == 600
    await tick(pipe, minutes=20)  # past the 15 min response time, but acknowledged
    assert not any("ESCALATED" in t for t in receiver.text(CRITICAL))

    # 30 minutes without a status update since the ack → one reminder, not one per tick
    await tick(pipe, minutes=10, seconds=1)
    await tick(pipe, minutes=1)
    reminders = [t for t in receiver.text(CRITICAL) if "please post one" in t]
    assert len(reminders) == 1 and reminders[0].startswith("📊 INCIDENT UPDATE 📊") and "bob" in reminders[0]
    await pipe.incidents.update(
        inc["id"], actor="bob", progress="restarted risk-manager", next_steps="watch", status="MITIGATING"
    )
    await tick(pipe, minutes=29)
    assert len([t for t in receiver.text(CRITICAL) if "please post one" in t]) == 1
    update = receiver.wait(CRITICAL, contains="Progress: restarted risk-manager")[0]
    assert "Status: MITIGATING" in update and "Next Steps: watch" in update

    # the recovery event mitigates, and a P2/P3 does not open an incident
    await pipe.publish("agent.recovered", "info", "risk-manager is back", agent="risk-manager")
    await pipe.publish("metrics.latency", "warning", "slow", seconds=6)
    await pipe.drain()
    assert len(await pipe.incidents.listing(state=None, limit=10)) == 1


async def test_halt_ack_unhalt_resolve_timeline_and_postmortem(pipe: Pipeline, receiver: Receiver) -> None:
    await pipe.publish(
        "halt.daily_loss_limit", message="Trading halted: daily_loss_limit", reason="daily_loss_limit", actor="system"
    )
    await pipe.drain()
    await tick(pipe, seconds=20)
    await pipe.publish("halt.daily_loss_limit", message="Trading halted: daily_loss_limit", reason="daily_loss_limit")
    await pipe.drain()
    (inc,) = await pipe.incidents.listing(state="open", limit=5)  # the repeat joined the open incident
    assert len([t for t in receiver.text(CRITICAL) if t.startswith("🚨")]) == 1  # ...and was throttled
    assert INCIDENTS_OPEN.labels("P0")._value.get() == 1

    await tick(pipe, minutes=2)
    await pipe.incidents.ack(inc["id"], actor="alice")
    await tick(pipe, minutes=8)
    await pipe.publish(
        "unhalt.unhalt",
        "warning",
        "Trading resumed (unhalt) after daily_loss_limit: limit raised",
        previousReason="daily_loss_limit",
        actor="alice",
    )
    await pipe.drain()
    assert (await pipe.incidents.get(inc["id"]))["status"] == "MITIGATING"
    await tick(pipe, minutes=5)
    done = await pipe.incidents.resolve(
        inc["id"], actor="alice", root_cause="bad fills on a thin market", resolution="limit raised, strategy paused"
    )
    await pipe.drain()
    assert INCIDENTS_OPEN.labels("P0")._value.get() == 0

    kinds = [e["kind"] for e in done["timeline"]]
    assert kinds == ["halt", "detection", "halt", "ack", "unhalt", "resolution"]
    assert done["timeToRespondSeconds"] == 140 and done["timeToMitigateSeconds"] == 620
    assert done["timeToResolveSeconds"] == 920
    resolved = receiver.wait(CRITICAL, contains="✅ INCIDENT RESOLVED ✅")[0]
    assert "Root Cause: bad fills on a thin market" in resolved and "(15m 20s)" in resolved
    assert any(t.startswith("📊 INCIDENT UPDATE 📊") and "Trading resumed" in t for t in receiver.text(CRITICAL))

    md = postmortem.generate(done, now=pipe.clock())
    for text in (
        "## 1. Incident Summary",
        "## 2. Timeline",
        "## 3. Root Cause Analysis",
        "## 4. Action Items",
        "## 5. Lessons Learned",
        "time to respond 2m 20s",
        "time to resolve 15m 20s",
        "**Primary cause:** bad fills on a thin market",
        "| unhalt | alice |",
    ):
        assert text in md, text
