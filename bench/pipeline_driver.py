#!/usr/bin/env python3
"""(The same driver as the acceptance check perf-pipeline.sh uses.) Drive manual-order runs through a running cli-trading (POST /orchestrate/run with side and
notional) and time each run until its first terminal message: exec.status filled/failed/rejected
or risk.responses ok=false, matched by requestId. Two modes: --rate R (open loop, R runs/s for
--seconds) for latency, or -n N -c C (closed loop) for throughput. Prints one JSON line."""
import argparse, asyncio, json, time, uuid
import httpx
import redis.asyncio as aioredis

TERMINAL = {"filled", "failed", "rejected"}


def pct(vals, p):
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


async def tail(r, starts, done, stop):
    last = dict(starts)
    while not stop.is_set():
        res = await r.xread(last, count=1000, block=200)
        now = time.perf_counter()
        for stream, entries in res or []:
            stream = stream.decode() if isinstance(stream, bytes) else stream
            for eid, fields in entries:
                last[stream] = eid
                try:
                    p = json.loads(fields.get(b"data", b"{}"))
                except Exception:
                    continue
                rid = p.get("requestId")
                if not rid or rid in done:
                    continue
                if stream == "exec.status" and p.get("status") in TERMINAL:
                    done[rid] = (now, p.get("status"))
                elif stream == "risk.responses" and p.get("ok") is False:
                    done[rid] = (now, "rejected:" + str(p.get("reason")))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7001")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--notional", type=float, default=10.0)
    ap.add_argument("--stall", type=float, default=15.0)
    a = ap.parse_args()

    r = aioredis.from_url(a.redis)
    starts = {}
    for s in ("exec.status", "risk.responses"):
        last = await r.xrevrange(s, "+", "-", count=1)
        starts[s] = last[0][0] if last else b"0-0"
    done, stop, sent, codes = {}, asyncio.Event(), {}, {}
    t_tail = asyncio.create_task(tail(aioredis.from_url(a.redis), starts, done, stop))

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=max(a.c, 64))) as cli:
        async def one(i):
            rid = str(uuid.uuid4())
            sent[rid] = time.perf_counter()
            body = {"symbol": "BTC-USD", "side": "buy" if i % 2 == 0 else "sell", "notional": a.notional}
            try:
                resp = await cli.post(f"{a.url}/orchestrate/run", json=body, headers={"X-Request-Id": rid})
                code = resp.status_code
            except Exception as e:
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
            q = asyncio.Queue()
            for i in range(a.n):
                q.put_nowait(i)

            async def worker():
                while not q.empty():
                    await one(q.get_nowait())
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
    outcomes = {}
    for rid in fin:
        k = done[rid][1].split(":")[0]
        outcomes[k] = outcomes.get(k, 0) + 1
    t_end = max((done[rid][0] for rid in fin), default=t_sent)
    print(json.dumps({
        "mode": f"rate {a.rate}/s for {a.seconds}s" if a.rate else f"closed n={a.n} c={a.c}",
        "sent": len(sent), "http": codes, "completed": len(fin), "outcomes": outcomes,
        "completed_per_s": round(len(fin) / max(1e-9, t_end - t0), 1),
        "lat_ms_p50_p95_p99": [None if pct(lat, p) is None else round(pct(lat, p), 1) for p in (50, 95, 99)],
    }))


if __name__ == "__main__":
    asyncio.run(main())
