"""Health checks of the infrastructure: Redis, the database, the host, the last backup."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from cli_trading.config import redact_url
from cli_trading.db import engine as dbengine
from cli_trading.db import server_repo
from cli_trading.ops import backup as bk
from cli_trading.ops import redisdurable
from cli_trading.ops.checks import Check, Status, Thresholds, grade, worst
from cli_trading.ops.locate import Located


# -- Redis ----------------------------------------------------------------------------------
def redis_check(loc: Located, th: Thresholds) -> Check:
    if not loc.redis_url:
        return Check("redis", "redis", "warning", "Redis address unknown: set REDIS_URL or DATA_DIR", {})
    r = redis.Redis.from_url(loc.redis_url, socket_connect_timeout=2, socket_timeout=3)
    try:
        r.ping()
        mem, clients = r.info("memory"), r.info("clients")
        maxclients = int(r.config_get("maxclients").get("maxclients") or 10000)
    except redis.RedisError as exc:
        return Check("redis", "redis", "critical", f"Redis not reachable: {type(exc).__name__}",
                     {"url": redact_url(loc.redis_url), "error": str(exc)[:200]})
    finally:
        r.close()
    used, limit = int(mem.get("used_memory", 0)), int(mem.get("maxmemory", 0))
    n = int(clients.get("connected_clients", 0))
    statuses = [grade(used / limit, th.redis_mem_warn, th.redis_mem_crit) if limit else "ok",
                grade(n / maxclients, th.redis_clients_warn, th.redis_clients_crit)]
    mem_txt = f"{mem.get('used_memory_human')} of {mem.get('maxmemory_human')}" if limit else \
        f"{mem.get('used_memory_human')} (no maxmemory limit)"
    return Check("redis", "redis", worst(statuses), f"PONG; memory {mem_txt}; {n}/{maxclients} clients", {
        "url": redact_url(loc.redis_url), "usedMemory": used, "maxMemory": limit,
        "maxmemoryPolicy": mem.get("maxmemory_policy"), "connectedClients": n, "maxClients": maxclients,
        "blockedClients": int(clients.get("blocked_clients", 0)),
    })


def redis_durability_check(loc: Located) -> Check:
    """A warning when a Redis restart, or a full Redis, can lose acknowledged work."""
    if not loc.redis_url:
        return Check("redis:durability", "redis", "warning", "Redis address unknown", {})
    r = redis.Redis.from_url(loc.redis_url, socket_connect_timeout=2, socket_timeout=3)
    try:
        risks, evidence = redisdurable.inspect(r)
    except redis.RedisError as exc:
        return Check("redis:durability", "redis", "critical", f"Redis not reachable: {type(exc).__name__}", {})
    finally:
        r.close()
    if not risks:
        return Check("redis:durability", "redis", "ok",
                     f"append-only file on (fsync {evidence.get('appendfsync', '?')}), noeviction", evidence)
    summary = " ".join(f"{k.title}. At risk: {k.at_risk}. Fix: {k.fix}." for k in risks)
    return Check("redis:durability", "redis", "warning", summary,
                 {**evidence, "risks": [{"id": k.id, "atRisk": k.at_risk, "fix": k.fix} for k in risks]})


# -- database -------------------------------------------------------------------------------
def database_check(loc: Located, th: Thresholds) -> Check:
    if loc.is_postgres:
        try:
            return asyncio.run(_pg_check(loc, th))
        except (TimeoutError, OSError, SQLAlchemyError) as exc:
            cause = _cause(exc)
            return Check("database", "database", "critical", f"PostgreSQL not reachable: {type(cause).__name__}",
                         {"url": redact_url(loc.db_url), "error": str(cause)[:200]})
    return _sqlite_check(loc.sqlite_path)


def _cause(exc: BaseException) -> BaseException:
    """The driver's error (InvalidPasswordError, ConnectionRefusedError, …), not SQLAlchemy's
    wrapper around it."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return inner.__cause__ or inner


async def _pg_check(loc: Located, th: Thresholds) -> Check:
    async with dbengine.short_lived(loc.db_url, connect_timeout_s=3) as engine, engine.connect() as conn:
        load = await server_repo.server_load(conn)
    n, mx, locks = load.connections, load.max_connections, load.ungranted_locks
    status = worst([grade(n / mx, th.pg_conn_warn, th.pg_conn_crit), "warning" if locks else "ok"])
    lock_txt = f"; {locks} ungranted lock(s)" if locks else "; no ungranted locks"
    return Check("database", "database", status, f"PostgreSQL ready; {n}/{mx} connections{lock_txt}", {
        "url": redact_url(loc.db_url), "connections": n, "maxConnections": mx, "ungrantedLocks": locks,
        "sizeBytes": load.size_bytes,
    })


def _sqlite_check(path: Path | None) -> Check:
    if path is None or not path.exists():
        return Check("database", "database", "critical", f"SQLite file missing: {path}", {"path": str(path)})
    try:
        result = server_repo.sqlite_quick_check(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the finding
        return Check("database", "database", "critical", f"SQLite unreadable: {exc}", {"path": str(path)})
    status: Status = "ok" if result == "ok" else "critical"
    return Check("database", "database", status, f"SQLite {path.name}: quick_check {result}",
                 {"path": str(path), "sizeBytes": path.stat().st_size, "quickCheck": result})


# -- host -----------------------------------------------------------------------------------
def disk_check(loc: Located, th: Thresholds) -> Check:
    where = loc.data_dir if loc.data_dir.exists() else Path(".")
    u = shutil.disk_usage(where)
    free = u.free / u.total
    status: Status = "critical" if free <= th.disk_free_crit else "warning" if free <= th.disk_free_warn else "ok"
    return Check("disk", "host", status, f"{free:.0%} free on the data folder's disk ({u.free // 2**30} GiB)",
                 {"path": str(where.resolve()), "totalBytes": u.total, "freeBytes": u.free,
                  "freeRatio": round(free, 4)})


def memory_check(th: Thresholds) -> Check:
    info = _meminfo()
    total, avail = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    if not total:
        return Check("memory", "host", "ok", "memory not measurable on this platform", {})
    ratio = avail / total
    status: Status = "critical" if ratio <= th.mem_avail_crit else "warning" if ratio <= th.mem_avail_warn else "ok"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return Check("memory", "host", status, f"{ratio:.0%} memory available ({avail // 2**20} MiB)",
                 {"totalBytes": total, "availableBytes": avail, "availableRatio": round(ratio, 4), "loadAvg": load})


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


# -- backups --------------------------------------------------------------------------------
def backup_check(loc: Located, th: Thresholds) -> Check:
    found = bk.all_backups(loc.backup_root)
    if not found:
        return Check("backup", "backup", "warning", f"no backup yet in {loc.backup_root}",
                     {"backupDir": str(loc.backup_root)})
    last = found[-1]
    hours = last.age_s() / 3600
    status = grade(hours, th.backup_age_warn_h, th.backup_age_crit_h)
    ver: dict[str, Any] = last.verification or {}
    if ver and not ver.get("ok"):
        status = worst([status, "warning"])
    state = "verified" if ver.get("ok") else "verification FAILED" if ver else "not verified"
    return Check("backup", "backup", status, f"last backup {last.id}, {hours:.1f} h ago, {state}",
                 {"backupDir": str(loc.backup_root), "id": last.id, "ageHours": round(hours, 2),
                  "verification": ver or None, "count": len(found)})
