"""Incidents on the clock: escalation of what is not acknowledged within its response time, and
status-update reminders to the commander. Runs every few seconds in the notification manager
with the agent's (injectable) clock; several instances may run it at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from cli_trading.db import notify_repo
from cli_trading.notify import escalation
from cli_trading.notify.config import Priority
from cli_trading.notify.incidents import Incidents
from cli_trading.notify.metrics import ESCALATIONS


async def run_due(svc: Incidents) -> None:
    """Escalate what is unacknowledged past its response time, remind silent commanders."""
    now = svc.clock()
    async with svc.sessions() as s:
        incidents = await notify_repo.open_incidents(s)
    for inc in incidents:
        severity = cast("Priority", inc.severity)  # written from a validated priority (incidents.py)
        chain = svc.cfg.escalation.get(severity, [])
        due = escalation.levels_due(
            opened_at=inc.opened_at,
            acknowledged=inc.acknowledged_at is not None,
            level=inc.escalation_level,
            now=now,
            response_minutes=svc.cfg.response_minutes[severity],
            chain_length=len(chain),
        )
        if due:
            await _escalate(svc, inc, due, chain, now)
        await _remind(svc, inc, now)
    await svc.refresh_gauge()


async def _escalate(svc: Incidents, inc: Any, levels: list[int], chain: list[str], now: datetime) -> None:
    async with svc.sessions() as s, s.begin():
        if not await notify_repo.claim_escalation(
            s, incident_id=inc.id, from_level=inc.escalation_level, to_level=levels[-1]
        ):
            return
        for level in levels:
            contact = svc.cfg.contacts[chain[level]]
            await notify_repo.add_event(
                s,
                incident_id=inc.id,
                ts=now,
                kind="escalation",
                actor="system",
                message=f"not acknowledged: escalated to {contact.name} (level {level})",
            )
    for level in levels:
        ESCALATIONS.labels(inc.severity).inc()
        await svc.announce(
            "incident.escalated",
            inc.id,
            contact=chain[level],
            level=level,
            waited=(now - inc.opened_at).total_seconds(),
        )


async def _remind(svc: Incidents, inc: Any, now: datetime) -> None:
    async with svc.sessions() as s:
        last = await notify_repo.last_event(s, incident_id=inc.id, kinds=("reminder",))
    quiet_since = max(inc.last_update_at or inc.opened_at, last.ts if last else inc.opened_at)
    if not escalation.reminder_due(last_activity=quiet_since, now=now, interval_minutes=svc.cfg.status_update_minutes):
        return
    key = f"cli-trading:notify:reminder:{inc.id}:{int(quiet_since.timestamp())}"
    if not await svc.redis.set(key, 1, nx=True, ex=int(svc.cfg.status_update_minutes * 60) + 60):
        return
    silent = (now - (inc.last_update_at or inc.opened_at)).total_seconds()
    async with svc.sessions() as s, s.begin():
        await notify_repo.add_event(
            s,
            incident_id=inc.id,
            ts=now,
            kind="reminder",
            actor="system",
            message=f"status update due ({int(silent // 60)} min without one)",
        )
    await svc.announce("incident.reminder", inc.id, silent=silent)
