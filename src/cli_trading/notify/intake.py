"""Incidents from classified events: a P0/P1 event opens one (or joins the open one for the
same cause), an unhalt or recovery mitigates the open one it names. Idempotent on the event's
traceId (a Redis marker), so a redelivered message never adds a second timeline entry; a Redis
lock per cause keeps two instances from opening the same incident twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cli_trading.db import notify_repo
from cli_trading.notify.classify import Classification
from cli_trading.notify.incidents import APPLIED, Incidents

APPLIED_TTL_S = 7 * 86_400


@dataclass(frozen=True)
class Observed:
    incident_id: int
    action: str  # opened | joined | mitigated


def parse_ts(value: Any, default: datetime) -> datetime:
    try:
        ts = datetime.fromisoformat(str(value))
        return ts if ts.tzinfo else default
    except ValueError:
        return default


async def observe(svc: Incidents, event: dict[str, Any], cls: Classification) -> Observed | None:
    """Open, join or mitigate an incident for this event; idempotent on its traceId."""
    if not cls.opens_incident and not cls.mitigates:
        return None
    marker = f"{APPLIED}{event.get('traceId')}"
    if done := await svc.redis.get(marker):
        iid, action = done.decode().split(":", 1)
        return Observed(int(iid), action) if int(iid) else None
    now = svc.clock()
    happened = parse_ts(event.get("ts"), now)
    cause = cls.cause if cls.opens_incident else str(cls.mitigates)
    async with svc.redis.lock(f"cli-trading:notify:lock:{cause}", timeout=15, blocking_timeout=15):
        async with svc.sessions() as s, s.begin():
            inc = await notify_repo.open_for_cause(s, cause=cause)
            kind = event.get("type", "").split(".", 1)[0]
            kind = kind if kind in ("halt", "unhalt") else "trigger"
            actor = (event.get("context") or {}).get("actor")
            if inc is None and not cls.opens_incident:
                observed = None
            elif inc is None:
                inc = await svc.create(s, cls=cls, now=now, actor=None)
                await notify_repo.add_event(
                    s, incident_id=inc.id, ts=happened, kind=kind, message=event.get("message", ""), actor=actor
                )
                await notify_repo.add_event(
                    s,
                    incident_id=inc.id,
                    ts=now,
                    kind="detection",
                    message=f"{cls.priority} {cls.category} incident opened (rule {cls.rule})",
                )
                if cls.ack_by:
                    await notify_repo.set_fields(s, incident_id=inc.id, values={"acknowledged_at": now})
                    await notify_repo.add_event(
                        s,
                        incident_id=inc.id,
                        ts=now,
                        kind="ack",
                        actor=cls.ack_by,
                        message=f"acknowledged by {cls.ack_by}, who raised it",
                    )
                observed = Observed(inc.id, "opened")
            elif cls.opens_incident:
                await notify_repo.add_event(
                    s,
                    incident_id=inc.id,
                    ts=happened,
                    kind=kind,
                    message=f"again: {event.get('message', '')}",
                    actor=actor,
                )
                observed = Observed(inc.id, "joined")
            else:
                await notify_repo.add_event(
                    s,
                    incident_id=inc.id,
                    ts=happened,
                    kind="unhalt" if kind == "unhalt" else "mitigation",
                    message=event.get("message", ""),
                    actor=actor,
                )
                values: dict[str, Any] = {"last_update_at": now}
                if inc.mitigated_at is None:
                    values["mitigated_at"] = happened
                if inc.status == "INVESTIGATING":
                    values["status"] = "MITIGATING"
                await notify_repo.set_fields(s, incident_id=inc.id, values=values)
                observed = Observed(inc.id, "mitigated")
        value = f"{observed.incident_id}:{observed.action}" if observed else "0:none"
        await svc.redis.set(marker, value, ex=APPLIED_TTL_S)
    if observed and observed.action == "opened":
        svc.audit("incident:open", target=str(observed.incident_id), result=cls.priority, cause=cause)
        await svc.refresh_gauge()
    return observed
