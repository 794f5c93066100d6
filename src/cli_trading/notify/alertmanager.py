"""Prometheus alerts as notify events: Alertmanager's webhook payload → one event per alert.

Point an Alertmanager webhook receiver at `http://notification-manager:7006/notify/alertmanager`
to let incidents, escalation and the post-mortem cover the alert rules (HighErrorRate P1,
HighLatency P2, …). The alert's `severity` label (P0–P3) and `category` label carry over; the
traceId is derived from the alert's fingerprint and start, so Alertmanager's repeats of one
firing are handled once (the bus's idempotency) and its resolution mitigates the incident."""

from __future__ import annotations

from typing import Any

from cli_trading.contracts import NotifyEvent

SEVERITY = {"P0": "critical", "P1": "critical", "P2": "warning", "P3": "info"}


def events(payload: dict[str, Any]) -> list[NotifyEvent]:
    out = []
    for alert in payload.get("alerts") or []:
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        notes = {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()}
        name = labels.get("alertname", "unnamed")
        resolved = alert.get("status") == "resolved"
        level = labels.get("severity", "")
        severity = SEVERITY.get(level, level if level in ("critical", "warning", "info") else "warning")
        out.append(
            NotifyEvent(
                type=f"alert.{name}" + (".resolved" if resolved else ""),
                severity="info" if resolved else severity,
                message=(("Resolved: " if resolved else "") + (notes.get("summary") or name))[:500],
                context={
                    **labels,
                    **notes,
                    "priority": level if level in SEVERITY else None,
                    "source": "prometheus",
                    "startsAt": alert.get("startsAt"),
                },
                traceId=f"am-{alert.get('fingerprint', name)}-{alert.get('startsAt', '')}-{int(resolved)}"[:80],
            )
        )
    return out
