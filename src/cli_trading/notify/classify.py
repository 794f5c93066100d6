"""Event → priority (P0–P3) and category, by the first matching rule of the policy file. Pure: no
I/O, no clock. An event no rule matches falls back on its own severity (critical → P1, warning →
P2, info → P3) and its context's category."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from cli_trading.notify.config import PRIORITIES, Rule

FALLBACK = {"critical": "P1", "warning": "P2", "info": "P3"}
CATEGORIES = ("trading", "security", "infrastructure")


@dataclass(frozen=True)
class Classification:
    priority: str
    category: str
    rule: str
    cause: str
    title: str
    impact: str
    services: list[str] = field(default_factory=list)
    opens_incident: bool = False
    ack_by: str | None = None
    mitigates: str | None = None
    throttle: bool = True


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, event: dict[str, Any]) -> str:
    """`{type}`, `{message}`, `{severity}` and any context key; unknown keys become ''."""
    ctx = event.get("context") or {}
    values = _Blank({k: "" if v is None else v for k, v in ctx.items()})
    values.update(type=event.get("type", ""), message=event.get("message", ""), severity=event.get("severity", ""))
    try:
        return template.format_map(values)
    except (ValueError, AttributeError, IndexError):
        return template


def _number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def matches(rule: Rule, event: dict[str, Any]) -> bool:
    m, ctx = rule.match, event.get("context") or {}
    globs = [m.type] if isinstance(m.type, str) else m.type
    if not any(fnmatch.fnmatchcase(str(event.get("type", "")), g) for g in globs):
        return False
    if m.severity and event.get("severity") not in m.severity:
        return False
    if any(str(ctx.get(k)) != v for k, v in m.context.items()):
        return False
    for key, limit in m.above.items():
        n = _number(ctx.get(key))
        if n is None or n <= limit:
            return False
    for key, limit in m.below.items():
        n = _number(ctx.get(key))
        if n is None or n >= limit:
            return False
    return True


def classify(event: dict[str, Any], rules: list[Rule]) -> Classification:
    ctx = event.get("context") or {}
    for rule in rules:
        if matches(rule, event):
            priority: str = rule.priority
            if priority == "from_context":
                priority = str(ctx["priority"]) if ctx.get("priority") in PRIORITIES else _fallback(event)
            category = rule.category or _category(ctx)
            opens = rule.incident if rule.incident is not None else priority in ("P0", "P1")
            actor = ctx.get("actor") if rule.ack_by_actor else None
            return Classification(
                priority=priority,
                category=category,
                rule=rule.name,
                cause=fill(rule.cause, event),
                title=fill(rule.title, event)[:200],
                impact=fill(rule.impact, event) if rule.impact else _impact(priority),
                services=sorted({*rule.services, *([ctx["agent"]] if ctx.get("agent") else [])}),
                opens_incident=opens,
                ack_by=str(actor) if actor else None,
                mitigates=fill(rule.mitigates, event) if rule.mitigates else None,
                throttle=rule.throttle,
            )
    priority = _fallback(event)
    return Classification(
        priority=priority,
        category=_category(ctx),
        rule="fallback",
        cause=str(event.get("type", "unknown")),
        title=str(event.get("message", ""))[:200],
        impact=_impact(priority),
        services=[ctx["agent"]] if ctx.get("agent") else [],
        opens_incident=priority in ("P0", "P1"),
    )


def _fallback(event: dict[str, Any]) -> str:
    return FALLBACK.get(str(event.get("severity")), "P3")


def _category(ctx: dict[str, Any]) -> str:
    c = ctx.get("category")
    return c if c in CATEGORIES else "infrastructure"


def _impact(priority: str) -> str:
    return {
        "P0": "High: trading stopped or at risk",
        "P1": "Medium: trading degraded",
        "P2": "Low: no direct effect on trading yet",
    }.get(priority, "None")
