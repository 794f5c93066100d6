"""Is Redis configured so that a restart loses nothing the system acknowledged? Shared by the
health check and the security audit. Read from INFO (works where CONFIG is disabled, as on
managed Redis); the fsync policy from CONFIG GET when allowed.

- no append-only file (`appendonly no`, the default of many installs): a restart of Redis loses
  every stream: orders queued for the executor, fills not yet in every ledger, notifications,
  runs between their steps; the halt flag falls back on its database copy;
- an eviction policy other than `noeviction`: under memory pressure Redis deletes keys to make
  room (a stream, the halt flag, an idempotency key) instead of refusing the write."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class Risk:
    id: str
    title: str
    at_risk: str
    fix: str


NO_AOF = Risk(
    "redis-no-aof",
    "Redis has no append-only file (appendonly no)",
    "a Redis restart loses every stream entry: orders queued for the executor, fills not yet applied by every "
    "agent, runs between steps, notifications; a halt survives only through its database copy",
    "appendonly yes (redis.conf, or CONFIG SET appendonly yes then CONFIG REWRITE); appendfsync everysec",
)
EVICTS = Risk(
    "redis-evicts",
    "Redis may evict keys under memory pressure",
    "with maxmemory-policy {policy}, a full Redis deletes keys to make room: a stream with unconsumed orders or "
    "fills, the live halt flag, idempotency keys",
    "maxmemory-policy noeviction (Redis then refuses writes when full; the agents retry and report 503)",
)


def assess(persistence: dict[str, Any], memory: dict[str, Any]) -> tuple[list[Risk], dict[str, Any]]:
    """Pure: the risks found in INFO persistence / INFO memory, and the evidence."""
    aof = str(persistence.get("aof_enabled", "0")) == "1"
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    risks = [] if aof else [NO_AOF]
    if policy != "noeviction":
        risks.append(Risk(EVICTS.id, EVICTS.title, EVICTS.at_risk.format(policy=policy), EVICTS.fix))
    return risks, {"appendonly": "yes" if aof else "no", "maxmemoryPolicy": policy}


def inspect(r: redis.Redis) -> tuple[list[Risk], dict[str, Any]]:
    risks, evidence = assess(r.info("persistence"), r.info("memory"))
    with contextlib.suppress(redis.RedisError):  # CONFIG disabled (managed Redis): INFO was enough
        evidence["appendfsync"] = r.config_get("appendfsync").get("appendfsync")
    return risks, evidence
