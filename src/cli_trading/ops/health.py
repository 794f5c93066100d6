"""`cli-trading health`: every check the runbook's "verify system health" needs, each ok /
warning / critical with its evidence; exit 0 all ok, 1 warnings, 2 anything critical.

JSON document (`--json`):

    {"status": "ok|warning|critical", "exitCode": 0|1|2, "checkedAt": ISO-8601,
     "system": {"dataDir", "portBase", "redis", "database", "sources"},
     "counts": {"ok": n, "warning": n, "critical": n},
     "checks": [{"name", "category", "status", "summary", "evidence": {...}}, ...]}

Categories: agents, redis, database, streams, trading, host, backup.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis

from cli_trading.contracts import AGENTS, HALT_KEY, SUBSCRIPTIONS, dlq_of, iso
from cli_trading.ops import infra
from cli_trading.ops.checks import Check, Status, Thresholds, exit_code, grade, worst
from cli_trading.ops.locate import Located


def run_checks(loc: Located, th: Thresholds | None = None) -> dict[str, Any]:
    th = th or Thresholds.from_env()
    with ThreadPoolExecutor(max_workers=len(AGENTS)) as pool:
        agents = list(pool.map(lambda n: agent_check(loc, n), AGENTS))
    pnl = _get_json(loc.url() + "/pnl/status")
    checks = [
        *agents,
        infra.redis_check(loc, th),
        infra.redis_durability_check(loc),
        infra.database_check(loc, th),
        *stream_checks(loc, th),
        halt_check(loc, pnl),
        pnl_check(pnl, th),
        infra.disk_check(loc, th),
        infra.memory_check(th),
        infra.backup_check(loc, th),
    ]
    status = worst([c.status for c in checks])
    return {
        "status": status,
        "exitCode": exit_code(status),
        "checkedAt": iso(),
        "system": loc.describe(),
        "counts": {s: sum(c.status == s for c in checks) for s in ("ok", "warning", "critical")},
        "checks": [c.to_json() for c in checks],
    }


def _get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    try:
        r = httpx.get(url, timeout=3, headers=headers)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


# -- agents ---------------------------------------------------------------------------------
def agent_check(loc: Located, name: str) -> Check:
    url = loc.url(name)
    try:
        r = httpx.get(url + "/health", timeout=3)
    except httpx.HTTPError as exc:
        return Check(f"agent:{name}", "agents", "critical", f"down: {type(exc).__name__}", {"url": url})
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:200]}
    if r.status_code == 200:
        return Check(f"agent:{name}", "agents", "ok", "healthy", {"url": url, "checks": body.get("checks")})
    failing = [k for k, v in (body.get("checks") or {}).items() if isinstance(v, dict) and not v.get("ok")]
    return Check(f"agent:{name}", "agents", "critical", f"unhealthy ({r.status_code}): {', '.join(failing) or '?'}",
                 {"url": url, "httpStatus": r.status_code, "checks": body.get("checks")})


# -- streams --------------------------------------------------------------------------------
def stream_checks(loc: Located, th: Thresholds) -> list[Check]:
    try:
        rows = _streams_from_redis(loc) if loc.redis_url else None
    except redis.RedisError:
        rows = None
    if rows is None:
        token = loc.token()
        doc = _get_json(loc.url() + "/admin/streams", headers={"X-Admin-Token": token}) if token else None
        rows = doc["streams"] if doc else None
    if rows is None:
        return [Check("streams", "streams", "critical", "stream state not readable (Redis and the admin API)", {})]
    return [_pending_check(rows, th), _dlq_check(rows, th)]


def _streams_from_redis(loc: Located) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(loc.redis_url or "", socket_connect_timeout=2, socket_timeout=3, decode_responses=True)
    try:
        out = []
        for stream, expected in SUBSCRIPTIONS.items():
            groups = []
            if r.exists(stream):
                for g in r.xinfo_groups(stream):
                    oldest = None
                    if g["pending"]:
                        first = r.xpending_range(stream, g["name"], min="-", max="+", count=1)
                        oldest = first[0]["time_since_delivered"] if first else None
                    groups.append({"name": g["name"], "pending": g["pending"], "lag": g.get("lag"),
                                   "consumers": g["consumers"], "oldestPendingMs": oldest})
            out.append({"stream": str(stream), "groups": groups, "expectedGroups": [str(e) for e in expected],
                        "dlq": dlq_of(stream), "dlqLength": r.xlen(dlq_of(stream))})
        return out
    finally:
        r.close()


def _pending_check(rows: list[dict[str, Any]], th: Thresholds) -> Check:
    statuses, problems, detail = [], [], {}
    for s in rows:
        for g in s["groups"]:
            age_s = (g.get("oldestPendingMs") or 0) / 1000
            st = worst([grade(g["pending"], th.pending_warn, th.pending_crit),
                        grade(age_s, th.pending_age_warn_s, th.pending_age_crit_s) if g["pending"] else "ok"])
            statuses.append(st)
            detail[f"{s['stream']}/{g['name']}"] = {"pending": g["pending"], "oldestPendingS": round(age_s, 1),
                                                    "lag": g.get("lag")}
            if st != "ok":
                problems.append(f"{s['stream']}/{g['name']} {g['pending']} pending, oldest {age_s:.0f}s")
    total = sum(v["pending"] for v in detail.values())
    summary = "; ".join(problems) if problems else f"{total} pending in {len(detail)} groups"
    return Check("streams:pending", "streams", worst(statuses), summary,
                 {"groups": detail, "thresholds": {"pending": [th.pending_warn, th.pending_crit],
                                                   "oldestS": [th.pending_age_warn_s, th.pending_age_crit_s]}})


def _dlq_check(rows: list[dict[str, Any]], th: Thresholds) -> Check:
    lengths = {s["dlq"]: int(s["dlqLength"]) for s in rows}
    statuses = [grade(n, th.dlq_warn, th.dlq_crit) for n in lengths.values()]
    bad = {k: n for k, n in lengths.items() if n}
    summary = ", ".join(f"{k}: {n}" for k, n in bad.items()) if bad else "every dead-letter queue is empty"
    return Check("streams:dlq", "streams", worst(statuses), summary,
                 {"lengths": lengths, "thresholds": [th.dlq_warn, th.dlq_crit]})


# -- trading --------------------------------------------------------------------------------
def halt_check(loc: Located, pnl: dict[str, Any] | None) -> Check:
    state = pnl if pnl is not None else _halt_from_redis(loc) or _halt_from_db(loc)
    if state is None:
        return Check("halt", "trading", "critical", "halt state unknown (orchestrator, Redis, database)", {})
    ev = {k: state.get(k) for k in ("halted", "haltReason", "haltMode", "haltedAt", "haltedBy", "haltNote", "source")}
    if not state.get("halted"):
        return Check("halt", "trading", "ok", "trading (not halted)", ev)
    reason = state.get("haltReason")
    status: Status = "warning" if reason == "daily_target_reached" else "critical"
    src = f" [from {state['source']}]" if state.get("source") else ""
    return Check("halt", "trading", status, f"HALTED: {reason} since {state.get('haltedAt')}"
                 + (f" ({state.get('haltNote')})" if state.get("haltNote") else "") + src, ev)


def _halt_from_redis(loc: Located) -> dict[str, Any] | None:
    if not loc.redis_url:
        return None
    try:
        h = redis.Redis.from_url(loc.redis_url, socket_connect_timeout=2, decode_responses=True).hgetall(HALT_KEY)
    except redis.RedisError:
        return None
    if not h:
        return None
    return {"halted": h.get("halted") == "1", "haltReason": h.get("reason") or None, "haltMode": h.get("mode"),
            "haltedAt": h.get("halted_at") or None, "haltedBy": h.get("halted_by") or None,
            "haltNote": h.get("note") or None, "source": "redis"}


def _halt_from_db(loc: Located) -> dict[str, Any] | None:
    """The durable copy (halt_state), when neither the orchestrator nor Redis answers."""
    import asyncio

    from cli_trading.db import engine as dbengine
    from cli_trading.db import repo

    async def go() -> dict[str, Any]:
        async with dbengine.one_session(loc.db_url) as s:
            return {**(await repo.load_halt(s)).to_api(), "source": "database"}

    if loc.sqlite_path is not None and not loc.sqlite_path.exists():
        return None
    try:
        return asyncio.run(go())
    except Exception:  # noqa: BLE001 - unknown is reported by the caller
        return None


def pnl_check(pnl: dict[str, Any] | None, th: Thresholds) -> Check:
    if pnl is None:
        return Check("pnl", "trading", "critical", "PnL unknown: the orchestrator does not answer /pnl/status", {})
    pct, target, loss = (float(pnl.get(k) or 0) for k in ("percent", "dailyTargetPct", "dailyLossLimitPct"))
    ev = {k: pnl.get(k) for k in ("date", "percent", "equity", "startEquity", "realized", "unrealized", "fees",
                                   "dailyTargetPct", "dailyLossLimitPct")}
    if pct <= -loss:
        return Check("pnl", "trading", "critical", f"{pct:+.2f}% at or below the loss limit -{loss}%", ev)
    if pct <= -loss * th.pnl_loss_warn_ratio:
        return Check("pnl", "trading", "warning", f"{pct:+.2f}% near the loss limit -{loss}%", ev)
    note = " (daily target reached)" if pct >= target else ""
    return Check("pnl", "trading", "ok", f"{pct:+.2f}% (target +{target}%, loss limit -{loss}%){note}", ev)
