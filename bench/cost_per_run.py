#!/usr/bin/env python3
"""What one run costs, independent of how busy the machine is: CPU seconds per 1,000 completed
runs for each process (every agent, `up`, a private Redis, the PostgreSQL backends of the
benchmark's database, the load generator), PostgreSQL commits per run, and Redis commands per
run by command. Wall-clock throughput on a shared machine is noise; these are not (much).

Runs `bench/pipeline_driver.py` with the arguments after `--` and reads /proc/<pid>/stat,
pg_stat_database and INFO commandstats before and after it. bench/cost_per_run.sh starts the
system (a private Redis, a fresh database) and calls this. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import psycopg
import redis

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, tid: int | None = None) -> float | None:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime (fields 14, 15)


def name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args)
    for agent in (
        "orchestrator",
        "portfolio-manager",
        "risk-manager",
        "trade-executor",
        "market-analyst",
        "notification-manager",
        "parameter-optimizer",
    ):
        if agent in text:
            return agent
    if "redis-server" in text:
        return "redis"
    if " up " in text or text.endswith(" up"):
        return "up"
    return text[:40]


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def pg_backends(dsn: str, db: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,)
        ).fetchall()
    return [r[0] for r in rows]


def pg_counts(dsn: str, db: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_returned + tup_fetched"
            " FROM pg_stat_database WHERE datname = %s",
            (db,),
        ).fetchone()
    assert row is not None, f"no database {db}"
    out = dict(zip(("commits", "rollbacks", "inserted", "updated", "read"), map(int, row), strict=True))
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/" + db, autocommit=True) as c:
        for table, seq in c.execute("SELECT relname, coalesce(seq_tup_read, 0) FROM pg_stat_user_tables").fetchall():
            out[f"seq_read:{table}"] = int(seq)  # rows read by whole-table scans
    return out


def redis_calls(r: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}


def snapshot(pids: dict[int, str]) -> dict[int, float]:
    return {p: c for p in pids if (c := cpu_s(p)) is not None}


def main_thread_s(pids: dict[int, str], name: str) -> float:
    """The CPU of `name`'s main thread (its event loop), the rest being its HTTP server's thread."""
    pid = next((p for p, n in pids.items() if n == name), None)
    return (cpu_s(pid, pid) or 0.0) if pid is not None else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--up-pid", type=int, required=True)
    ap.add_argument("--redis", required=True, help="the private Redis (its commands are counted)")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--db", default="ct_cost")
    ap.add_argument("driver", nargs=argparse.REMAINDER, help="-- then bench/pipeline_driver.py's arguments")
    a = ap.parse_args()
    r = redis.Redis.from_url(a.redis)
    redis_pid = int(r.info("server")["process_id"])
    pids = {p: name_of(p) for p in children(a.up_pid)}
    pids[a.up_pid] = "up"
    pids[redis_pid] = "redis"
    for p in pg_backends(a.pg_admin, a.db):
        pids[p] = "postgresql"
    r.config_resetstat()
    pg0, cpu0 = pg_counts(a.pg_admin, a.db), snapshot(pids)
    loop0 = main_thread_s(pids, "orchestrator")
    driver = subprocess.Popen(
        [sys.executable, "bench/pipeline_driver.py", "--redis", a.redis, *[x for x in a.driver if x != "--"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    pids[driver.pid], cpu0[driver.pid] = "client", 0.0
    out, _ = driver.communicate()
    time.sleep(0.3)  # the last 100 ms flush of the orchestrator lands in the window
    for p in pg_backends(a.pg_admin, a.db):  # connections opened meanwhile count from zero
        if p not in pids:
            pids[p], cpu0[p] = "postgresql", 0.0
    cpu1, pg1, calls = snapshot(pids), pg_counts(a.pg_admin, a.db), redis_calls(r)
    loop1 = main_thread_s(pids, "orchestrator")
    child = resource.getrusage(resource.RUSAGE_CHILDREN)  # the driver, reaped by communicate()
    cpu1[driver.pid] = child.ru_utime + child.ru_stime
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    runs = max(1, result["completed"])
    per: dict[str, float] = {}
    for p, name in pids.items():
        if p in cpu1 and p in cpu0:
            per[name] = per.get(name, 0.0) + cpu1[p] - cpu0[p]
    system = sum(v for k, v in per.items() if k != "client")
    result["cpu_s_per_1000_runs"] = {
        k: round(v * 1000 / runs, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1])
    }
    result["cpu_s_per_1000_runs_system"] = round(system * 1000 / runs, 3)
    result["orchestrator_loop_thread_cpu_s_per_1000_runs"] = round((loop1 - loop0) * 1000 / runs, 3)
    result["pg_per_run"] = {k: round((pg1[k] - pg0.get(k, 0)) / runs, 2) for k in pg1 if pg1[k] - pg0.get(k, 0)}
    result["redis_per_run"] = {k: round(v / runs, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v}
    result["redis_per_run_total"] = round(sum(calls.values()) / runs, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
