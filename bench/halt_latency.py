#!/usr/bin/env python3
"""Halt latency under load: while a closed loop of manual orders runs through a live system,
halt and unhalt repeatedly and time each POST /admin/orchestrate/halt (request → response), and
after each halt the time until the last in-flight order has settled (exec.status seen for every
order the halt listed as in flight). Prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import redis.asyncio as aioredis


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


async def load(url: str, stop: asyncio.Event, clients: int) -> None:
    async def one(c: httpx.AsyncClient, i: int) -> None:
        while not stop.is_set():
            await c.post("/orchestrate/run", json={"symbol": "BTC-USD", "side": "buy" if i % 2 else "sell", "notional": 10})

    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await asyncio.gather(*(one(c, i) for i in range(clients)))


async def settled(r: aioredis.Redis, order_ids: set[str], start_id: bytes, timeout: float = 10) -> float | None:
    t0, last = time.perf_counter(), start_id
    while order_ids and time.perf_counter() - t0 < timeout:
        res = await r.xread({"exec.status": last}, count=1000, block=200) or []
        for _, entries in res:
            for eid, fields in entries:
                last = eid
                order_ids.discard(json.loads(fields[b"data"]).get("orderId"))
    return None if order_ids else (time.perf_counter() - t0) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7001")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--token", required=True)
    ap.add_argument("--halts", type=int, default=30)
    ap.add_argument("--clients", type=int, default=16)
    a = ap.parse_args()
    r = aioredis.from_url(a.redis)
    stop = asyncio.Event()
    loader = asyncio.create_task(load(a.url, stop, a.clients))
    halt_ms, settle_ms, in_flight = [], [], []
    headers = {"X-Admin-Token": a.token}
    async with httpx.AsyncClient(base_url=a.url, timeout=30, headers=headers) as c:
        await asyncio.sleep(2)
        for _ in range(a.halts):
            last = await r.xrevrange("exec.status", "+", "-", count=1)
            start = last[0][0] if last else b"0-0"
            t0 = time.perf_counter()
            res = await c.post("/admin/orchestrate/halt", json={"reason": "manual", "note": "bench"})
            halt_ms.append((time.perf_counter() - t0) * 1000)
            ids = set(res.json().get("inFlight", []))
            in_flight.append(len(ids))
            s = await settled(r, ids, start)
            if s is not None:
                settle_ms.append(s)
            await c.post("/admin/orchestrate/unhalt", json={"force": True})
            await asyncio.sleep(0.3)
    stop.set()
    await loader
    print(json.dumps({
        "halts": len(halt_ms), "clients": a.clients,
        "halt_response_ms_p50_p95_p99": [pct(halt_ms, p) for p in (50, 95, 99)],
        "in_flight_at_halt_max": max(in_flight, default=0),
        "last_in_flight_settled_ms_p50_p99": [pct(settle_ms, p) for p in (50, 99)],
    }))


if __name__ == "__main__":
    asyncio.run(main())
