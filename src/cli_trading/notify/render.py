"""Which template, which fields, which channels: a message plan for one event. Pure: the caller
passes the event, its classification and the incident record it concerns (if any)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cli_trading.isotime import parse_iso
from cli_trading.notify import templates as t
from cli_trading.notify.classify import Classification
from cli_trading.notify.config import Contact, NotifyConfig
from cli_trading.notify.templates import Rendered


@dataclass(frozen=True)
class Plan:
    message: Rendered
    channels: list[str]
    priority: str
    category: str
    incident_id: int | None = None


def for_event(
    cfg: NotifyConfig,
    event: dict[str, Any],
    cls: Classification,
    *,
    action: str | None,
    inc: Any,
    now: datetime,
    suppressed: int = 0,
) -> Plan:
    """A producer's event: alert (new incident or none), or an update of the incident it joins
    or mitigates."""
    repeats = f" (+{suppressed} similar alerts suppressed)" if suppressed else ""
    eta = t.next_update(now, cfg.status_update_minutes)
    if inc is not None and action in ("joined", "mitigated"):
        progress = ("repeated: " if action == "joined" else "") + event.get("message", "") + repeats
        next_steps = "verify the fix, then resolve the incident" if action == "mitigated" else "continue investigating"
        msg = t.update(
            priority=inc.severity,
            incident_id=inc.id,
            title=inc.title,
            status=inc.status,
            progress=progress,
            next_steps=next_steps,
            eta=eta,
        )
        return Plan(msg, cfg.route(inc.severity, inc.category), inc.severity, inc.category, inc.id)
    if inc is not None:
        msg = t.alert(
            service=cfg.service,
            priority=inc.severity,
            issue=inc.title + repeats,
            impact=inc.impact or "-",
            status=inc.status,
            eta=eta,
            contact=inc.commander or cfg.primary(inc.severity),
            incident_id=inc.id,
        )
        return Plan(msg, cfg.route(inc.severity, inc.category), inc.severity, inc.category, inc.id)
    informational = cls.priority == "P3"
    msg = t.alert(
        service=cfg.service,
        priority=cls.priority,
        issue=cls.title + repeats,
        impact=cls.impact,
        status="INFORMATIONAL (no action required)" if informational else "INVESTIGATING",
        eta="no update expected" if informational else eta,
        contact=cfg.primary(cls.priority),
    )
    return Plan(msg, cfg.route(cls.priority, cls.category), cls.priority, cls.category)


def for_lifecycle(cfg: NotifyConfig, event: dict[str, Any], inc: Any, now: datetime) -> Plan:
    """incident.opened / ack / update / resolved / escalated / reminder."""
    ctx = event.get("context") or {}
    kind = str(event.get("type", "")).split(".", 1)[1]
    channels = cfg.route(inc.severity, inc.category)
    eta = str(ctx.get("eta") or t.next_update(now, cfg.status_update_minutes))
    if kind == "opened":
        msg = t.alert(
            service=cfg.service,
            priority=inc.severity,
            issue=inc.title,
            impact=inc.impact or "-",
            status=inc.status,
            eta=eta,
            contact=inc.commander or cfg.primary(inc.severity),
            incident_id=inc.id,
        )
    elif kind == "resolved":
        msg = t.resolved(
            priority=inc.severity,
            incident_id=inc.id,
            title=inc.title,
            start=ctx_time(ctx, "startedAt") or inc.opened_at,
            end=inc.resolved_at,
            root_cause=inc.root_cause or "",
            resolution=inc.resolution or "",
            postmortem_due=(inc.resolved_at or now) + timedelta(hours=cfg.postmortem_due_hours),
        )
    elif kind == "escalated":
        contact = cfg.contacts.get(str(ctx.get("contact"))) or Contact(name=str(ctx.get("contact")))
        who = contact.name + (f" <{contact.address}>" if contact.address else "")
        msg = t.escalation(
            service=cfg.service,
            priority=inc.severity,
            incident_id=inc.id,
            title=inc.title,
            impact=inc.impact or "-",
            contact=who,
            level_name=f"level {ctx.get('level')}",
            waited_s=float(ctx.get("waited") or 0),
            response_minutes=cfg.response_minutes[inc.severity],
            eta=eta,
        )
        channels = list(dict.fromkeys([*contact.channels, *channels]))
    elif kind == "reminder":
        msg = t.reminder(
            priority=inc.severity,
            incident_id=inc.id,
            title=inc.title,
            status=inc.status,
            commander=inc.commander or "commander",
            silent_s=float(ctx.get("silent") or 0),
            eta=eta,
        )
    else:  # ack, update
        msg = t.update(
            priority=inc.severity,
            incident_id=inc.id,
            title=inc.title,
            status=inc.status,
            progress=str(ctx.get("progress") or "-"),
            next_steps=str(ctx.get("nextSteps") or "-"),
            eta=eta,
        )
    return Plan(msg, channels, inc.severity, inc.category, inc.id)


def ctx_time(ctx: dict[str, Any], key: str) -> datetime | None:
    try:
        return parse_iso(str(ctx[key]))
    except (KeyError, ValueError):
        return None
