#!/usr/bin/env python3
"""Halt latency under load: while the core benchmark's closed loop of manual orders runs through
a live system (pipeline_driver.py in its own process, so the load generator never delays the
halt client), halt and unhalt repeatedly and time each POST /admin/orchestrate/halt (request →
response, each on a new connection), and after each halt the time until the last in-flight order
has settled (exec.status seen for every order the halt listed as in flight). Prints one JSON line
per halt URL.

Several --halt-url (e.g. direct and through the nginx edge) take turns, halt by halt, under the
same load in the same run: their difference is the path's, not the machine's mood. The unhalts
go to --url (not timed), so an edge's admin rate limit counts only the halts sent through it.

The halts are sent with the runbook's own command, curl, timed by curl itself (`time_total`:
connect to last byte; not its start-up), at the priority of the shell that runs this
(CURL_PREFIX, e.g. "chrt -f 1", runs it otherwise); --client aiohttp sends them from this
process instead."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


async def settled(r: aioredis.Redis, order_ids: set[str], start_id: bytes, limit_s: float = 10) -> float | None:
    t0, last = time.perf_counter(), start_id
    while order_ids and time.perf_counter() - t0 < limit_s:
        res = await r.xread({"exec.status": last}, count=1000, block=200) or []
        for _, entries in res:
            for eid, fields in entries:
                last = eid
                order_ids.discard(json.loads(fields[b"data"]).get("orderId"))
    return None if order_ids else (time.perf_counter() - t0) * 1000


async def _curl(*args: str) -> bytes:
    """curl in a session of its own, as from an operator's shell: with the kernel's autogroup
    scheduling on (the default of most distributions), a process in the load generator's session
    shares that session's CPU share with it and waits behind it (docs/benchmarks.md)."""
    proc = await asyncio.create_subprocess_exec(
        *os.environ.get("CURL_PREFIX", "").split(), "curl", *args, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    out, _ = await proc.communicate()
    return out


async def curl_halt(url: str, token: str) -> tuple[float, float, dict]:
    """The runbook's own command; curl's time_total (connect to last byte, not its start-up); -k
    for the self-signed certificates of bench/halt_figures.sh's TLS and edge modes. Also the time
    after the connection is ready (time_total − time_appconnect; − time_connect on plain HTTP):
    the request and its answer without curl's TLS handshake."""
    timing = "\\n%{time_connect} %{time_appconnect} %{time_total}"
    out = await _curl("-s", "-k", "-X", "POST", "-H", f"X-Admin-Token: {token}", f"{url}/admin/orchestrate/halt",
                      "-d", '{"reason":"manual","note":"bench"}', "-w", timing)
    body, times = out.decode().rsplit("\n", 1)
    connect, appconnect, total = (float(t) for t in times.split())
    return total * 1000, (total - max(connect, appconnect)) * 1000, json.loads(body)


async def curl_probe(url: str) -> float:
    """A plain GET with the same curl, timed the same way (the floor a path cannot go under)."""
    return float((await _curl("-s", "-k", "-o", "/dev/null", "-w", "%{time_total}", url)).decode()) * 1000


def summary(ms: list[float]) -> list[float | None]:
    return [pct(ms, p) for p in (50, 95, 99)]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7001")
    ap.add_argument("--halt-url", action="append",
                    help="where the halts go (e.g. the nginx edge; repeat: they take turns); default --url")
    ap.add_argument("--probe-url", action="append", default=[],
                    help="also time a GET here before each halt (e.g. openssl s_server: curl's own TLS cost)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--token", required=True)
    ap.add_argument("--halts", type=int, default=30)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--client", choices=["curl", "aiohttp"], default="curl", help="who sends the halts")
    ap.add_argument("--rate", type=float, default=0.0, help="open-loop load (runs/s) instead of a closed loop")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between an unhalt and the next halt")
    a = ap.parse_args()
    halt_urls = a.halt_url or [a.url]
    r = aioredis.from_url(a.redis)
    driver = Path(__file__).with_name("pipeline_driver.py")
    seconds = str(a.halts * len(halt_urls) * (a.pause + 0.3) + 5)
    load = await asyncio.create_subprocess_exec(
        sys.executable, str(driver), "--url", a.url, "--redis", a.redis, "--stall", "3",
        *(["--rate", str(a.rate), "--seconds", seconds] if a.rate
          else ["-c", str(a.clients), "--for-seconds", seconds]),
        stdout=asyncio.subprocess.PIPE,
    )
    halt_ms: dict[str, list[float]] = {u: [] for u in halt_urls}
    after_ms: dict[str, list[float]] = {u: [] for u in halt_urls}  # curl only: once connected
    probe_ms: dict[str, list[float]] = {u: [] for u in a.probe_url}
    settle_ms: list[float] = []
    in_flight: list[int] = []
    # a new connection per request, as the runbook's curl and `cli-trading halt` make
    connector = aiohttp.TCPConnector(force_close=True, ssl=False)
    async with aiohttp.ClientSession(headers={"X-Admin-Token": a.token}, connector=connector) as c:
        await asyncio.sleep(2)
        for i in range(a.halts * len(halt_urls)):
            halt_url = halt_urls[i % len(halt_urls)]
            for probe in a.probe_url:
                probe_ms[probe].append(await curl_probe(probe))
            last = await r.xrevrange("exec.status", "+", "-", count=1)
            start = last[0][0] if last else b"0-0"
            if a.client == "curl":
                ms, after, body = await curl_halt(halt_url, a.token)
                after_ms[halt_url].append(after)
            else:
                t0 = time.perf_counter()
                body_json = {"reason": "manual", "note": "bench"}
                async with c.post(f"{halt_url}/admin/orchestrate/halt", json=body_json) as res:
                    body = await res.json()
                ms = (time.perf_counter() - t0) * 1000
            halt_ms[halt_url].append(ms)
            ids = set(body.get("inFlight", []))
            in_flight.append(len(ids))
            s = await settled(r, ids, start)
            if s is not None:
                settle_ms.append(s)
            async with c.post(f"{a.url}/admin/orchestrate/unhalt", json={"force": True}) as res:
                await res.read()
            await asyncio.sleep(a.pause)
    out, _ = await load.communicate()
    load_kind = f"open loop {a.rate}/s" if a.rate else f"closed loop, {a.clients} clients"
    for probe, ms in probe_ms.items():
        print(json.dumps({"probe": probe, "requests": len(ms), "load_kind": load_kind, "ms_p50_p95_p99": summary(ms)}))
    for halt_url, ms in halt_ms.items():
        print(json.dumps({
            "halts": len(ms), "client": a.client, "haltUrl": halt_url,
            "load_kind": load_kind,
            "halt_response_ms_p50_p95_p99": summary(ms),
            "once_connected_ms_p50_p95_p99": summary(after_ms[halt_url]) if after_ms[halt_url] else None,
            "in_flight_at_halt_max": max(in_flight, default=0),
            "in_flight_settled": len(settle_ms), "in_flight_lists": len(in_flight),
            "last_in_flight_settled_ms_p50_p99": [pct(settle_ms, p) for p in (50, 99)],
            "load": json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else None,
        }))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
