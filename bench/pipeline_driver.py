#!/usr/bin/env python3
"""Drive manual-order runs through a running cli-trading (POST /orchestrate/run with side and
notional) and time each run until its first terminal message: exec.status filled/failed/rejected
or risk.responses ok=false, matched by requestId. Two modes: --rate R (open loop, R runs/s for
--seconds) for latency, or -n N -c C (closed loop on the HTTP answer) for throughput, or
--for-seconds S (closed loop until stopped, used as background load). Prints one JSON line.

Same method and output as the acceptance check's pipeline_bench.py. The HTTP client differs:
by default the lean keep-alive client of bench/lean_http.py (httptools parses the answers),
because httpx's connection pool costs 2-6 ms of CPU per request on this machine and aiohttp
~0.07 ms more than the lean one (docs/benchmarks.md): on two cores the load generator's CPU is
taken from the system it measures. `--client aiohttp` is the driver before 2026-11-30 23:45 UTC;
`--client httpx` reproduces the check exactly."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

TERMINAL = {"filled", "failed", "rejected"}
Post = Callable[[str, bytes, dict[str, str]], Awaitable[int]]  # url, JSON body, headers -> status


def pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


async def tail(r: aioredis.Redis, starts: dict[str, bytes], done: dict[str, Any], stop: asyncio.Event) -> None:
    last = dict(starts)
    while not stop.is_set():
        res = await r.xread(last, count=1000, block=200)
        now = time.perf_counter()
        for stream, entries in res or []:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            for eid, fields in entries:
                last[stream] = eid
                try:
                    p = orjson.loads(fields.get(b"data", b"{}"))
                except orjson.JSONDecodeError:
                    continue
                rid = p.get("requestId")
                if not rid or rid in done:
                    continue
                if stream == "exec.status" and p.get("status") in TERMINAL:
                    done[rid] = (now, p.get("status"))
                elif stream == "risk.responses" and p.get("ok") is False:
                    done[rid] = (now, "rejected:" + str(p.get("reason")))


class Client:
    """One keep-alive HTTP client (lean, aiohttp or httpx) behind a single `post`."""

    def __init__(self, kind: str, connections: int) -> None:
        self.kind, self.connections = kind, connections

    async def __aenter__(self) -> Post:
        if self.kind == "lean":
            from lean_http import LeanClient

            self._c: Any = LeanClient(self.connections)
            post: Post = self._c.post
        elif self.kind == "httpx":
            import httpx

            self._c = httpx.AsyncClient(
                timeout=30, limits=httpx.Limits(max_connections=self.connections), verify=False  # noqa: S501 - bench TLS
            )

            async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
                return (await self._c.post(url, content=body, headers=headers)).status_code
        else:
            import aiohttp

            self._c = aiohttp.ClientSession(
                # ssl=False: a benchmark against the agents' own self-signed TLS (bench/halt_figures.sh)
                connector=aiohttp.TCPConnector(limit=self.connections, ssl=False),
                timeout=aiohttp.ClientTimeout(total=30),
            )

            async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
                async with self._c.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status

        return post

    async def __aexit__(self, *exc: object) -> None:
        await (self._c.aclose() if self.kind == "httpx" else self._c.close())  # LeanClient.close too


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7001")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--for-seconds", type=float, default=0.0, help="closed loop for this long instead of -n")
    ap.add_argument("--notional", type=float, default=10.0)
    ap.add_argument("--stall", type=float, default=15.0)
    ap.add_argument("--client", choices=("lean", "aiohttp", "httpx"), default="lean")
    ap.add_argument("--token", default=os.environ.get("ADMIN_TOKEN", ""),
                    help="admin token sent with each manual order (X-Admin-Token); default $ADMIN_TOKEN")
    a = ap.parse_args()

    r = aioredis.from_url(a.redis)
    starts = {}
    for s in ("exec.status", "risk.responses"):
        last = await r.xrevrange(s, "+", "-", count=1)
        starts[s] = last[0][0] if last else b"0-0"
    done: dict[str, Any] = {}
    stop, sent, codes = asyncio.Event(), {}, {}
    t_tail = asyncio.create_task(tail(aioredis.from_url(a.redis), starts, done, stop))

    # the two bodies, encoded once; request ids: this process's random prefix and a counter (a
    # uuid4 per run is a getrandom call each)
    bodies = [orjson.dumps({"symbol": "BTC-USD", "side": side, "notional": a.notional}) for side in ("buy", "sell")]
    prefix, url = uuid.uuid4().hex, f"{a.url}/orchestrate/run"

    async with Client(a.client, max(a.c, 64)) as post:

        async def one(i: int) -> None:
            rid = f"{prefix}-{i:08d}"
            sent[rid] = time.perf_counter()
            try:
                headers = {"X-Request-Id": rid, "X-Admin-Token": a.token, "Content-Type": "application/json"}
                code: int | str = await post(url, bodies[i % 2], headers)
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                code = type(e).__name__
            codes[str(code)] = codes.get(str(code), 0) + 1

        t0 = time.perf_counter()
        if a.rate > 0:
            tasks, i, interval = [], 0, 1.0 / a.rate
            while time.perf_counter() - t0 < a.seconds:
                tasks.append(asyncio.create_task(one(i)))
                i += 1
                await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
            await asyncio.gather(*tasks)
        else:
            counter = iter(range(10**12 if a.for_seconds else a.n))

            async def worker() -> None:
                for i in counter:
                    if a.for_seconds and time.perf_counter() - t0 > a.for_seconds:
                        return
                    await one(i)

            await asyncio.gather(*[worker() for _ in range(a.c)])
        t_sent = time.perf_counter()

    want, last_n, last_t = set(sent), -1, time.perf_counter()
    while True:
        n = len(want & done.keys())
        if n != last_n:
            last_n, last_t = n, time.perf_counter()
        if n >= len(want) or time.perf_counter() - last_t > a.stall:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await t_tail
    fin = [rid for rid in sent if rid in done]
    lat = [(done[rid][0] - sent[rid]) * 1000 for rid in fin]
    outcomes: dict[str, int] = {}
    for rid in fin:
        k = done[rid][1].split(":")[0]
        outcomes[k] = outcomes.get(k, 0) + 1
    t_end = max((done[rid][0] for rid in fin), default=t_sent)
    mode = f"rate {a.rate}/s for {a.seconds}s" if a.rate else f"closed n={len(sent)} c={a.c}"
    print(json.dumps({
        "mode": f"{mode} ({a.client})",
        "sent": len(sent), "http": codes, "completed": len(fin), "outcomes": outcomes,
        "completed_per_s": round(len(fin) / max(1e-9, t_end - t0), 1),
        "lat_ms_p50_p95_p99": [None if pct(lat, p) is None else round(pct(lat, p), 1) for p in (50, 95, 99)],
    }))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
