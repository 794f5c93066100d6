"""Queries of the notification manager: incidents, their timeline, deliveries, and the halt
audit trail the timeline is assembled from. Keyword-only arguments; the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import desc, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.db.models import AuditEvent, Incident, IncidentEvent, Notification

RESOLVED = "RESOLVED"
DONE = ("sent", "not_configured")


# -- incidents ------------------------------------------------------------------------------
async def add_incident(s: AsyncSession, *, row: dict[str, Any]) -> Incident:
    inc = Incident(**row)
    s.add(inc)
    await s.flush()
    return inc


async def get_incident(s: AsyncSession, *, incident_id: int) -> Incident | None:
    return await s.get(Incident, incident_id)


async def open_for_cause(s: AsyncSession, *, cause: str) -> Incident | None:
    q = (
        select(Incident)
        .where(Incident.cause == cause, Incident.status != RESOLVED)
        .order_by(desc(Incident.id))
        .limit(1)
    )
    return (await s.scalars(q)).first()


async def list_incidents(s: AsyncSession, *, state: str | None = None, limit: int = 50) -> list[Incident]:
    q = select(Incident).order_by(desc(Incident.id)).limit(limit)
    if state == "open":
        q = q.where(Incident.status != RESOLVED)
    elif state == "resolved":
        q = q.where(Incident.status == RESOLVED)
    return list((await s.scalars(q)).all())


async def open_incidents(s: AsyncSession) -> list[Incident]:
    return await list_incidents(s, state="open", limit=1000)


async def count_open(s: AsyncSession) -> dict[str, int]:
    q = select(Incident.severity, func.count()).where(Incident.status != RESOLVED).group_by(Incident.severity)
    return {sev: int(n) for sev, n in (await s.execute(q)).all()}


async def set_fields(s: AsyncSession, *, incident_id: int, values: dict[str, Any]) -> None:
    await s.execute(update(Incident).where(Incident.id == incident_id).values(**values))


async def claim_escalation(s: AsyncSession, *, incident_id: int, from_level: int, to_level: int) -> bool:
    """Move the escalation level on, once: of several instances only one wins."""
    res = await s.execute(
        update(Incident)
        .where(Incident.id == incident_id, Incident.escalation_level == from_level, Incident.acknowledged_at.is_(None))
        .values(escalation_level=to_level)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult


# -- timeline -------------------------------------------------------------------------------
async def add_event(
    s: AsyncSession, *, incident_id: int, ts: datetime, kind: str, message: str, actor: str | None = None
) -> None:
    s.add(IncidentEvent(incident_id=incident_id, ts=ts, kind=kind, message=message[:4000], actor=actor))
    await s.flush()


async def events(s: AsyncSession, *, incident_id: int) -> list[IncidentEvent]:
    q = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.ts)
    return list((await s.scalars(q)).all())


async def last_event(s: AsyncSession, *, incident_id: int, kinds: Sequence[str]) -> IncidentEvent | None:
    q = (
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind.in_(kinds))
        .order_by(desc(IncidentEvent.ts))
        .limit(1)
    )
    return (await s.scalars(q)).first()


async def halt_audit(s: AsyncSession, *, since: datetime, until: datetime | None) -> list[AuditEvent]:
    """Halt, unhalt and rollover records of the orchestrator in a time window."""
    q = select(AuditEvent).where(AuditEvent.action.startswith("halt:"), AuditEvent.ts >= since)
    if until is not None:
        q = q.where(AuditEvent.ts <= until)
    return list((await s.scalars(q.order_by(AuditEvent.ts).limit(500))).all())


# -- deliveries -----------------------------------------------------------------------------
async def add_notifications(s: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await s.execute(insert(Notification), list(rows))


async def delivered(s: AsyncSession, *, trace_id: str) -> set[str]:
    """Channels this message already reached (or found unconfigured): a retry skips them."""
    q = select(Notification.channel).where(Notification.trace_id == trace_id, Notification.status.in_(DONE))
    return set((await s.scalars(q)).all())


async def notifications(
    s: AsyncSession, *, limit: int = 50, incident_id: int | None = None, trace_id: str | None = None
) -> list[Notification]:
    q = select(Notification).order_by(desc(Notification.id)).limit(limit)
    if incident_id is not None:
        q = q.where(Notification.incident_id == incident_id)
    if trace_id is not None:
        q = q.where(Notification.trace_id == trace_id)
    return list((await s.scalars(q)).all())


async def incident_of_trace(s: AsyncSession, *, trace_id: str) -> int | None:
    q = select(Notification.incident_id).where(Notification.trace_id == trace_id, Notification.incident_id.is_not(None))
    return (await s.scalars(q.limit(1))).first()
