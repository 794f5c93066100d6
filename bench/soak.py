#!/usr/bin/env python3
"""Memory over time of a running cli-trading under steady load: every --every seconds, the RSS of
each agent (pids from the data folder's runtime.json) and of the embedded Redis, Redis's
used_memory, its key count and the total length of the streams. Prints a JSON line per sample
to stderr and, at the end, one JSON line: each series at start, at the start of the steady
part (--steady-from, half the run by default: idempotency keys fill up to their TTL first) and at
the end, and its slope over the steady part (least squares, per hour). The goal is flat."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

STREAMS = ("orchestrator.commands", "analysis.signals", "risk.requests", "risk.responses", "exec.orders",
           "exec.status", "notify.events", "market.bars", "opt.requests", "opt.results")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample(data_dir: Path, r: redis.Redis) -> dict[str, Any]:
    rt = json.loads((data_dir / "runtime.json").read_text())
    out: dict[str, Any] = {"t": time.time()}
    for name, pid in (rt.get("agents") or {}).items():
        out[f"rss_mib.{name}"] = rss_mib(int(pid))
    if rt.get("redisPid"):
        out["rss_mib.redis-server"] = rss_mib(int(rt["redisPid"]))
    info = r.info("memory")
    out["redis.used_memory_mib"] = info["used_memory"] / 2**20
    out["redis.keys"] = r.dbsize()
    out["redis.stream_entries"] = sum(r.xlen(s) for s in STREAMS)
    return out


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return None if den == 0 else sum((t - mx) * (v - my) for t, v in points) / den * 3600


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--every", type=float, default=30)
    ap.add_argument("--steady-from", type=float, default=0.5,
                    help="the slope is fitted from this fraction of the run on (the TTLs fill up first)")
    a = ap.parse_args()
    rt = json.loads((a.data_dir / "runtime.json").read_text())
    r = redis.Redis.from_url(rt["redisUrl"])
    t0 = time.time()
    samples = []
    while True:
        s = sample(a.data_dir, r)
        samples.append(s)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}), file=sys.stderr,
              flush=True)
        if time.time() - t0 >= a.seconds:
            break
        time.sleep(max(0.0, min(a.every, t0 + a.seconds - time.time())))
    steady = [s for s in samples if s["t"] - t0 >= a.steady_from * a.seconds] or samples
    summary: dict[str, Any] = {"seconds": round(samples[-1]["t"] - t0), "samples": len(samples)}
    for key in sorted(k for k in samples[-1] if k != "t"):
        pts = [(s["t"], s[key]) for s in steady if s.get(key) is not None]
        if not pts:
            continue
        slope = slope_per_hour(pts)
        summary[key] = {"start": round(samples[0][key] or 0, 1), "steady": round(pts[0][1], 1),
                        "end": round(pts[-1][1], 1), "slope_per_h": None if slope is None else round(slope, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
