"""An incident as the API shows it: its record, its timeline (own events merged with the
orchestrator's halt/unhalt audit records), and the durations the post-mortem reports. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cli_trading.contracts import iso

AUDIT_KINDS = {"halt:halt": "halt", "halt:unhalt": "unhalt", "halt:rollover_clear": "unhalt"}
MITIGATING_KINDS = ("mitigation", "unhalt")
SAME_WITHIN = timedelta(seconds=5)


@dataclass(frozen=True)
class Entry:
    ts: datetime
    kind: str
    message: str
    actor: str | None = None
    source: str = "incident"

    def to_api(self) -> dict[str, Any]:
        return {
            "ts": iso(self.ts),
            "kind": self.kind,
            "message": self.message,
            "actor": self.actor,
            "source": self.source,
        }


def merge(own: list[Entry], audit: list[Any]) -> list[Entry]:
    """Own events plus the audit trail's halts and unhalts that are not already in them."""
    out = list(own)
    for a in audit:
        kind = AUDIT_KINDS.get(a.action)
        if kind is None:
            continue
        if any(e.kind == kind and abs(e.ts - a.ts) <= SAME_WITHIN for e in own):
            continue
        what = "Trading halted" if kind == "halt" else "Trading resumed"
        reason = f" ({a.result})" if a.result else ""
        out.append(Entry(a.ts, kind, f"{what}{reason} [{a.action}]", a.actor, "audit"))
    return sorted(out, key=lambda e: e.ts)


def first(entries: list[Entry], kinds: tuple[str, ...]) -> datetime | None:
    return next((e.ts for e in entries if e.kind in kinds), None)


@dataclass(frozen=True)
class Durations:
    start: datetime
    detected: datetime
    acknowledged: datetime | None
    mitigated: datetime | None
    resolved: datetime | None

    @staticmethod
    def _s(a: datetime | None, b: datetime | None) -> float | None:
        return None if a is None or b is None else max(0.0, (b - a).total_seconds())

    @property
    def detect_s(self) -> float | None:
        return self._s(self.start, self.detected)

    @property
    def respond_s(self) -> float | None:
        return self._s(self.detected, self.acknowledged)

    @property
    def mitigate_s(self) -> float | None:
        return self._s(self.start, self.mitigated)

    @property
    def resolve_s(self) -> float | None:
        return self._s(self.start, self.resolved)

    def to_api(self) -> dict[str, Any]:
        return {
            "startedAt": iso(self.start),
            "detectedAt": iso(self.detected),
            "timeToDetectSeconds": self.detect_s,
            "timeToRespondSeconds": self.respond_s,
            "timeToMitigateSeconds": self.mitigate_s,
            "timeToResolveSeconds": self.resolve_s,
        }


def durations(inc: Any, entries: list[Entry]) -> Durations:
    """Start = the earliest record; detection = the incident's opening; mitigation = the first
    MITIGATING status, mitigation or unhalt after the start; resolution = the resolved time."""
    start = min([inc.opened_at, *(e.ts for e in entries if e.kind not in ("reminder", "escalation"))])
    mitigated = inc.mitigated_at or first([e for e in entries if e.ts >= start], MITIGATING_KINDS)
    if mitigated is None and inc.resolved_at is not None:
        mitigated = inc.resolved_at
    return Durations(start, inc.opened_at, inc.acknowledged_at, mitigated, inc.resolved_at)


def incident_api(inc: Any) -> dict[str, Any]:
    def t(v: datetime | None) -> str | None:
        return iso(v) if v else None

    return {
        "id": inc.id,
        "title": inc.title,
        "severity": inc.severity,
        "category": inc.category,
        "status": inc.status,
        "cause": inc.cause,
        "commander": inc.commander,
        "impact": inc.impact,
        "services": inc.services or [],
        "openedAt": t(inc.opened_at),
        "acknowledgedAt": t(inc.acknowledged_at),
        "mitigatedAt": t(inc.mitigated_at),
        "resolvedAt": t(inc.resolved_at),
        "escalationLevel": inc.escalation_level,
        "lastUpdateAt": t(inc.last_update_at),
        "rootCause": inc.root_cause,
        "resolution": inc.resolution,
    }
