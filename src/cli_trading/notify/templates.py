"""The runbook's three communication templates (initial alert, status update, resolution notice),
plus the escalation and reminder notices built on them. Plain text that reads well in Slack, mail
and PagerDuty alike; every field of the runbook's template is always present."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


def when(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts else "-"


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def ref(incident_id: int | None, title: str) -> str:
    return f"#{incident_id} {title}" if incident_id else title


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


def alert(
    *,
    service: str,
    priority: str,
    issue: str,
    impact: str,
    status: str,
    eta: str,
    contact: str,
    incident_id: int | None = None,
    heading: str = "🚨 INCIDENT ALERT 🚨",
    extra: list[str] | None = None,
) -> Rendered:
    lines = [
        heading,
        f"Severity: {priority}",
        f"Service: {service}",
        f"Issue: {issue}",
        f"Impact: {impact}",
        f"Status: {status}",
        f"ETA: {eta}",
        f"Contact: {contact}",
    ]
    if incident_id:
        lines += ["", f"Incident #{incident_id} — acknowledge: cli-trading incident ack {incident_id}"]
    lines += extra or []
    return Rendered(f"[{priority}] {service}: {issue}", "\n".join(lines))


def update(
    *,
    priority: str,
    incident_id: int | None,
    title: str,
    status: str,
    progress: str,
    next_steps: str,
    eta: str,
) -> Rendered:
    body = "\n".join(
        [
            "📊 INCIDENT UPDATE 📊",
            f"Incident: {ref(incident_id, title)}",
            f"Status: {status}",
            f"Progress: {progress}",
            f"Next Steps: {next_steps}",
            f"ETA: {eta}",
        ]
    )
    return Rendered(f"[{priority}] update: {ref(incident_id, title)}", body)


def resolved(
    *,
    priority: str,
    incident_id: int | None,
    title: str,
    start: datetime | None,
    end: datetime | None,
    root_cause: str,
    resolution: str,
    postmortem_due: datetime | None,
) -> Rendered:
    duration = span((end - start).total_seconds()) if start and end else "-"
    due = f"draft ready now (cli-trading incident postmortem {incident_id}); complete by {when(postmortem_due)}"
    body = "\n".join(
        [
            "✅ INCIDENT RESOLVED ✅",
            f"Incident: {ref(incident_id, title)}",
            f"Duration: {when(start)} - {when(end)} ({duration})",
            f"Root Cause: {root_cause or 'under analysis'}",
            f"Resolution: {resolution or '-'}",
            f"Post-mortem: {due if incident_id else '-'}",
        ]
    )
    return Rendered(f"[{priority}] resolved: {ref(incident_id, title)}", body)


def escalation(
    *,
    service: str,
    priority: str,
    incident_id: int,
    title: str,
    impact: str,
    contact: str,
    level_name: str,
    waited_s: float,
    response_minutes: float,
    eta: str,
) -> Rendered:
    note = (
        f"Escalated to {level_name} ({contact}): not acknowledged after {span(waited_s)} "
        f"(response time for {priority}: < {response_minutes:g} min)"
    )
    return alert(
        service=service,
        priority=priority,
        issue=title,
        impact=impact,
        status="INVESTIGATING",
        eta=eta,
        contact=contact,
        incident_id=incident_id,
        heading="🚨 INCIDENT ALERT 🚨 (ESCALATED)",
        extra=[note],
    )


def reminder(
    *, priority: str, incident_id: int, title: str, status: str, commander: str, silent_s: float, eta: str
) -> Rendered:
    return update(
        priority=priority,
        incident_id=incident_id,
        title=title,
        status=status,
        progress=f"no status update for {span(silent_s)} — {commander}, please post one",
        next_steps=f"cli-trading incident update {incident_id} --progress '…' --next '…'",
        eta=eta,
    )


def next_update(now: datetime, minutes: float) -> str:
    return f"next update by {when(now + timedelta(minutes=minutes))}"
