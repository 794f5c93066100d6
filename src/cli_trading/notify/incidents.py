"""The incidents service: opened by P0/P1 events (or joined when one for the same cause is open),
by hand, acknowledged, updated, resolved; escalated and reminded on a clock you inject. Every
change is a database write, a timeline entry, an audit record, and a lifecycle event on
notify.events that the dispatcher renders with the runbook's templates and delivers.

Several notification-manager instances share the work: opening takes a Redis lock per cause,
escalation moves its level with a conditional UPDATE, a reminder is claimed with SET NX."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from cli_trading.contracts import NotifyEvent
from cli_trading.db import notify_repo
from cli_trading.notify.classify import Classification
from cli_trading.notify.config import PRIORITIES, NotifyConfig
from cli_trading.notify.metrics import INCIDENTS_OPEN
from cli_trading.notify.timeline import Entry, durations, incident_api, merge

STATUSES = ("INVESTIGATING", "MITIGATING", "RESOLVED")
APPLIED = "cli-trading:notify:applied:"  # traceId → incident id and action (see intake.py)


class IncidentError(Exception):
    status = 400


class NotFound(IncidentError):
    status = 404


class Conflict(IncidentError):
    status = 409


class Incidents:
    def __init__(
        self,
        *,
        cfg: NotifyConfig,
        sessions: Callable[[], Any],
        redis: Any,
        publish: Callable[[NotifyEvent], Awaitable[Any]],
        clock: Callable[[], datetime],
        audit: Callable[..., None] = lambda *a, **k: None,
    ) -> None:
        self.cfg, self.sessions, self.redis, self.publish, self.clock, self.audit = (
            cfg,
            sessions,
            redis,
            publish,
            clock,
            audit,
        )

    async def create(self, s: Any, *, cls: Classification, now: datetime, actor: str | None) -> Any:
        return await notify_repo.add_incident(
            s,
            row={
                "opened_at": now,
                "severity": cls.priority,
                "category": cls.category,
                "status": "INVESTIGATING",
                "title": cls.title,
                "cause": cls.cause,
                "commander": cls.ack_by or self.cfg.primary(cls.priority),
                "impact": cls.impact,
                "services": cls.services,
                "escalation_level": 0,
                "last_update_at": now,
            },
        )

    # -- by hand ----------------------------------------------------------------------------
    async def open(
        self,
        *,
        title: str,
        severity: str,
        category: str,
        impact: str | None,
        commander: str | None,
        services: list[str],
        actor: str,
    ) -> dict[str, Any]:
        if severity not in PRIORITIES:
            raise IncidentError(f"severity must be one of {', '.join(PRIORITIES)}")
        now = self.clock()
        cls = Classification(
            priority=severity,
            category=category,
            rule="manual",
            cause=f"manual:{now.timestamp()}",
            title=title,
            impact=impact or "to be assessed",
            services=services,
        )
        async with self.sessions() as s, s.begin():
            inc = await self.create(s, cls=cls, now=now, actor=actor)
            if commander:
                inc.commander = commander
            await notify_repo.add_event(
                s, incident_id=inc.id, ts=now, kind="detection", actor=actor, message=f"opened by hand: {title}"
            )
        self.audit("incident:open", actor=actor, target=str(inc.id), result=severity)
        await self.announce("incident.opened", inc.id, actor=actor)
        await self.refresh_gauge()
        return await self.get(inc.id)

    async def ack(self, incident_id: int, *, actor: str, commander: str | None = None) -> dict[str, Any]:
        now = self.clock()
        async with self.sessions() as s, s.begin():
            inc = await self._load(s, incident_id)
            if inc.acknowledged_at is not None and not commander:
                return {**await self._api(s, inc), "alreadyAcknowledged": True}
            values: dict[str, Any] = {"commander": commander or actor, "last_update_at": now}
            if inc.acknowledged_at is None:
                values["acknowledged_at"] = now
            await notify_repo.set_fields(s, incident_id=inc.id, values=values)
            await notify_repo.add_event(
                s,
                incident_id=inc.id,
                ts=now,
                kind="ack",
                actor=actor,
                message=f"acknowledged; commander: {values['commander']}",
            )
        self.audit("incident:ack", actor=actor, target=str(incident_id))
        await self.announce(
            "incident.ack",
            incident_id,
            actor=actor,
            progress=f"acknowledged by {actor}",
            nextSteps=f"{values['commander']} investigates",
        )
        return await self.get(incident_id)

    async def ack_trace(self, trace_id: str, *, actor: str) -> dict[str, Any]:
        async with self.sessions() as s:
            iid = await notify_repo.incident_of_trace(s, trace_id=trace_id)
        marker = await self.redis.get(f"{APPLIED}{trace_id}")
        if iid is None and marker:
            iid = int(marker.decode().split(":", 1)[0]) or None
        if iid is None:
            raise NotFound(f"no incident for traceId {trace_id}")
        return await self.ack(iid, actor=actor)

    async def update(
        self,
        incident_id: int,
        *,
        actor: str,
        progress: str,
        next_steps: str | None = None,
        status: str | None = None,
        eta: str | None = None,
        impact: str | None = None,
        commander: str | None = None,
    ) -> dict[str, Any]:
        if status and status not in STATUSES[:2]:
            raise IncidentError("status must be INVESTIGATING or MITIGATING (resolve with `incident resolve`)")
        now = self.clock()
        async with self.sessions() as s, s.begin():
            inc = await self._load(s, incident_id, open_only=True)
            values: dict[str, Any] = {"last_update_at": now}
            if status:
                values["status"] = status
            if status == "MITIGATING" and inc.mitigated_at is None:
                values["mitigated_at"] = now
            values.update({k: v for k, v in (("impact", impact), ("commander", commander)) if v})
            await notify_repo.set_fields(s, incident_id=inc.id, values=values)
            change = f" (status → {status})" if status and status != inc.status else ""
            await notify_repo.add_event(
                s,
                incident_id=inc.id,
                ts=now,
                kind="mitigation" if change and status == "MITIGATING" else "update",
                actor=actor,
                message=f"{progress}{change}",
            )
        self.audit("incident:update", actor=actor, target=str(incident_id), result=status)
        await self.announce(
            "incident.update", incident_id, actor=actor, progress=progress, nextSteps=next_steps or "-", eta=eta
        )
        return await self.get(incident_id)

    async def resolve(self, incident_id: int, *, actor: str, root_cause: str, resolution: str) -> dict[str, Any]:
        now = self.clock()
        async with self.sessions() as s, s.begin():
            inc = await self._load(s, incident_id, open_only=True)
            await notify_repo.set_fields(
                s,
                incident_id=inc.id,
                values={
                    "status": "RESOLVED",
                    "resolved_at": now,
                    "last_update_at": now,
                    "root_cause": root_cause,
                    "resolution": resolution,
                },
            )
            await notify_repo.add_event(
                s, incident_id=inc.id, ts=now, kind="resolution", actor=actor, message=resolution
            )
        self.audit("incident:resolve", actor=actor, target=str(incident_id))
        result = await self.get(incident_id)
        await self.announce("incident.resolved", incident_id, actor=actor, startedAt=result["startedAt"])
        await self.refresh_gauge()
        return result

    # -- reading ----------------------------------------------------------------------------
    async def get(self, incident_id: int) -> dict[str, Any]:
        async with self.sessions() as s:
            return await self._api(s, await self._load(s, incident_id))

    async def listing(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            return [incident_api(i) for i in await notify_repo.list_incidents(s, state=state, limit=limit)]

    async def timeline(self, s: Any, inc: Any) -> list[Entry]:
        own = [Entry(e.ts, e.kind, e.message, e.actor) for e in await notify_repo.events(s, incident_id=inc.id)]
        start = min([inc.opened_at, *(e.ts for e in own)]) - timedelta(seconds=5)
        audit = await notify_repo.halt_audit(s, since=start, until=inc.resolved_at)
        return merge(own, audit)

    async def _api(self, s: Any, inc: Any) -> dict[str, Any]:
        entries = await self.timeline(s, inc)
        return {**incident_api(inc), **durations(inc, entries).to_api(), "timeline": [e.to_api() for e in entries]}

    async def _load(self, s: Any, incident_id: int, *, open_only: bool = False) -> Any:
        inc = await notify_repo.get_incident(s, incident_id=incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id}")
        if open_only and inc.status == "RESOLVED":
            raise Conflict(f"incident {incident_id} is already resolved")
        return inc

    async def announce(self, type_: str, incident_id: int, **context: Any) -> None:
        await self.publish(
            NotifyEvent(
                type=type_,
                severity="info",
                message=f"{type_} #{incident_id}",
                context={"incidentId": incident_id, **context},
            )
        )

    # -- on the clock -----------------------------------------------------------------------
    async def refresh_gauge(self) -> None:
        async with self.sessions() as s:
            counts = await notify_repo.count_open(s)
        for p in PRIORITIES:
            INCIDENTS_OPEN.labels(p).set(counts.get(p, 0))
