"""The runbook's Recovery Validation Checklist, judged from facts gathered about the running
system (`notify/probe.py` gathers them). Pure: one function per item, each returning pass/fail
and the evidence it was judged on. "Documentation updated" is the one item only a person can
confirm."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cli_trading.contracts import AGENTS

LATENCY_LIMIT_S = 5.0
ERROR_RATE_LIMIT = 0.10
PENDING_LIMIT = 1000
BACKUP_MAX_AGE_H = 26.0


@dataclass
class Facts:
    health: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> {code, body, seconds}
    status: dict[str, int] = field(default_factory=dict)  # agent -> HTTP code of /status (0 = no answer)
    pnl: dict[str, Any] | None = None
    database_ok: bool = False
    database: str = ""
    streams: list[dict[str, Any]] | None = None
    streams_error: str | None = None
    open_incidents: list[dict[str, Any]] = field(default_factory=list)
    incidents_known: bool = True  # False when the incident records could not be read
    latency_p95_s: dict[str, float | None] = field(default_factory=dict)
    error_rates: dict[str, float] = field(default_factory=dict)
    admin_unauthenticated: int = 0  # status of an admin call without a token (401 expected)
    token_configured: bool = False
    auth_failures: float | None = None
    backup: dict[str, Any] | None = None
    backup_root: str = ""
    documented: bool = False


@dataclass(frozen=True)
class Item:
    key: str
    label: str
    ok: bool
    evidence: str
    manual: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "item": self.label,
            "ok": self.ok,
            "evidence": self.evidence,
            "check": "manual" if self.manual else "automatic",
        }


def health(f: Facts) -> Item:
    bad = [
        f"{a}: {f.health.get(a, {}).get('code') or 'no answer'}"
        for a in AGENTS
        if f.health.get(a, {}).get("code") != 200
    ]
    ok_n = len(AGENTS) - len(bad)
    return Item(
        "health",
        "All health checks passing",
        not bad,
        f"{ok_n}/{len(AGENTS)} agents answer /health 200" + (f"; failing: {', '.join(bad)}" if bad else ""),
    )


def trading(f: Facts) -> Item:
    if f.pnl is None:
        return Item("trading", "Trading system operational", False, "orchestrator /pnl/status did not answer")
    if f.pnl.get("halted"):
        return Item(
            "trading",
            "Trading system operational",
            False,
            f"HALTED: {f.pnl.get('haltReason')} since {f.pnl.get('haltedAt')} by {f.pnl.get('haltedBy')}",
        )
    return Item("trading", "Trading system operational", True, f"not halted; PnL today {f.pnl.get('percent')}%")


def agents(f: Facts) -> Item:
    silent = [a for a in AGENTS if f.status.get(a) != 200]
    slow = [f"{a} {h['seconds']:.1f}s" for a, h in f.health.items() if (h.get("seconds") or 0) > LATENCY_LIMIT_S]
    ev = f"{len(AGENTS) - len(silent)}/{len(AGENTS)} agents answer /status"
    ev += f"; silent: {', '.join(silent)}" if silent else ""
    ev += f"; slow: {', '.join(slow)}" if slow else ""
    return Item("agents", "All agents responding", not silent and not slow, ev)


def database(f: Facts) -> Item:
    failing = [
        a
        for a, h in f.health.items()
        if ((h.get("body") or {}).get("checks") or {}).get("database", {}).get("ok") is False
    ]
    ok = f.database_ok and not failing
    ev = f"{f.database or 'database'}: {'SELECT 1 ok' if f.database_ok else 'not reachable'}"
    ev += f"; agents reporting database down: {', '.join(failing)}" if failing else ""
    return Item("database", "Database connectivity verified", ok, ev)


def streams(f: Facts) -> Item:
    if f.streams is None:
        return Item("streams", "Stream processing normal", False, f"streams not readable: {f.streams_error}")
    dlq = {s["dlq"]: s["dlqLength"] for s in f.streams if s.get("dlqLength")}
    backlog = {
        f"{s['stream']}/{g['name']}": g["pending"]
        for s in f.streams
        for g in s["groups"]
        if g["pending"] > PENDING_LIMIT
    }
    missing = [
        f"{s['stream']}/{g}"
        for s in f.streams
        for g in s.get("expectedGroups", [])
        if g not in {x["name"] for x in s["groups"]}
    ]
    lagging = [
        f"{a}: {', '.join(h['body']['checks']['consumers']['unhealthy'])}"
        for a, h in f.health.items()
        if ((h.get("body") or {}).get("checks") or {}).get("consumers", {}).get("unhealthy")
    ]
    problems = [
        *(f"DLQ {k}: {v}" for k, v in dlq.items()),
        *(f"pending {k}: {v}" for k, v in backlog.items()),
        *(f"no consumer group {m}" for m in missing),
        *(f"unhealthy consumers {x}" for x in lagging),
    ]
    pending = sum(g["pending"] for s in f.streams for g in s["groups"])
    ev = "; ".join(problems) if problems else f"{len(f.streams)} streams, {pending} pending in total, DLQs empty"
    return Item("streams", "Stream processing normal", not problems, ev)


def alerts(f: Facts) -> Item:
    if not f.incidents_known:
        return Item("alerts", "Monitoring alerts cleared", False, "incident records not readable")
    serious = [i for i in f.open_incidents if i["severity"] in ("P0", "P1")]
    minor = [i for i in f.open_incidents if i["severity"] not in ("P0", "P1")]
    if serious:
        ev = "open: " + ", ".join(f"#{i['id']} {i['severity']} {i['title']} ({i['status']})" for i in serious)
    else:
        ev = "no open P0/P1 incident"
    ev += f"; {len(minor)} open P2/P3" if minor else ""
    return Item("alerts", "Monitoring alerts cleared", not serious, ev)


def performance(f: Facts) -> Item:
    slow = {a: v for a, v in f.latency_p95_s.items() if v is not None and v > LATENCY_LIMIT_S}
    errors = {k: v for k, v in f.error_rates.items() if v > ERROR_RATE_LIMIT}
    worst = max((v for v in f.latency_p95_s.values() if v is not None), default=None)
    ev = f"HTTP p95 ≤ {worst:.3f}s" if worst is not None else "no HTTP latency recorded yet"
    ev += "; error rates " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(f.error_rates.items()))
    if slow:
        ev += "; p95 above 5s: " + ", ".join(f"{a} {v:.1f}s" for a, v in slow.items())
    ok = not slow and not errors and bool(f.latency_p95_s)
    return Item("performance", "Performance metrics normal", ok, ev + " (since each agent started)")


def security(f: Facts) -> Item:
    problems = []
    if f.admin_unauthenticated != 401:
        problems.append(f"admin API without a token answered {f.admin_unauthenticated or 'nothing'} (401 expected)")
    if not f.token_configured:
        problems.append("no admin token configured")
    sec = [i for i in f.open_incidents if i["category"] == "security"]
    problems += [f"open security incident #{i['id']} {i['title']}" for i in sec]
    ev = (
        "; ".join(problems)
        or "admin API refuses unauthenticated calls (401); admin token configured; no open security incident"
    )
    if f.auth_failures is not None:
        ev += f"; {f.auth_failures:g} failed admin authentications since start"
    return Item("security", "Security posture verified", not problems, ev)


def backups(f: Facts) -> Item:
    b = f.backup
    if not b:
        return Item(
            "backups",
            "Backup systems operational",
            False,
            f"no backup under {f.backup_root} (run scripts/backup-system.sh backup)",
        )
    ok = b["ageHours"] <= BACKUP_MAX_AGE_H and b["checksums"] == "ok"
    return Item(
        "backups",
        "Backup systems operational",
        ok,
        f"latest {b['id']} ({b['ageHours']:.1f} h old, limit {BACKUP_MAX_AGE_H:g} h); checksums {b['checksums']}",
    )


def documentation(f: Facts) -> Item:
    ev = (
        "confirmed by the operator (--documented)"
        if f.documented
        else "confirm by hand once the runbook and post-mortem are updated: verify-recovery --documented"
    )
    return Item("documentation", "Documentation updated", f.documented, ev, manual=True)


CHECKS = (health, trading, agents, database, streams, alerts, performance, security, backups, documentation)


def evaluate(f: Facts) -> dict[str, Any]:
    items = [c(f) for c in CHECKS]
    return {
        "ok": all(i.ok for i in items),
        "passed": sum(i.ok for i in items),
        "total": len(items),
        "items": [i.to_api() for i in items],
    }
