"""Prometheus metrics of the notification manager. Labels are bounded: channel names from the
policy file, results, priorities."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NOTIFICATIONS_SENT = Counter(
    "notifications_sent", "Notification deliveries by channel and result", ["channel", "result"]
)
INCIDENTS_OPEN = Gauge("incidents_open", "Incidents not yet resolved", ["severity"])
NOTIFY_EVENTS = Counter("notify_events", "notify.events messages classified", ["severity", "category"])
ESCALATIONS = Counter("incident_escalations", "Escalations of unacknowledged incidents", ["severity"])
