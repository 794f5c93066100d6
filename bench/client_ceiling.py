#!/usr/bin/env python3
"""How fast can the load generator itself go? Starts a raw asyncio HTTP server that answers every
request at once (202, a fixed body, no application at all) in its own process, and drives it with
the clients the pipeline benchmarks use (32 workers, keep-alive, POST /orchestrate/run with a
JSON body): httpx, as the acceptance check does, aiohttp (bench/pipeline_driver.py --client
aiohttp) and the lean client of bench/lean_http.py (the driver's default). Prints one JSON line
per client: requests per second and the client's own CPU per request. No system under test can
be measured faster than its client."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import time
import uuid
from typing import Any

BODY = b'{"status":"accepted"}'
ANSWER = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


class _Answer(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            size = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.startswith(b"content-length:")), 0)
            if len(self.buf) < end + 4 + size:
                return
            self.buf = self.buf[end + 4 + size :]
            self.t.write(ANSWER)


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


async def drive(kind: str, url: str, n: int, c: int) -> dict[str, Any]:
    if kind == "httpx":
        import httpx

        client: Any = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=max(c, 64)))

        async def post(body: dict[str, Any]) -> None:
            await client.post(url, json=body, headers={"X-Request-Id": str(uuid.uuid4())})
    elif kind == "lean":  # bench/lean_http.py, bench/pipeline_driver.py's default
        import orjson
        from lean_http import LeanClient

        client = LeanClient(max(c, 64))

        async def post(body: dict[str, Any]) -> None:
            headers = {"X-Request-Id": str(uuid.uuid4()), "Content-Type": "application/json"}
            await client.post(url, orjson.dumps(body), headers)
    else:
        import aiohttp

        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(c, 64)))

        async def post(body: dict[str, Any]) -> None:
            async with client.post(url, json=body, headers={"X-Request-Id": str(uuid.uuid4())}) as r:
                await r.read()

    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await post({"symbol": "BTC-USD", "side": "buy" if i % 2 == 0 else "sell", "notional": 10.0})

    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(c)])
    wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    await (client.aclose() if kind == "httpx" else client.close())  # LeanClient.close too
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return {"client": kind, "requests": n, "concurrency": c, "requests_per_s": round(n / wall, 1),
            "client_cpu_ms_per_request": round(cpu / n * 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("--port", type=int, default=7999)
    a = ap.parse_args()
    server = multiprocessing.Process(target=serve, args=(a.port,), daemon=True)
    server.start()
    time.sleep(0.5)
    try:
        for kind in ("httpx", "aiohttp", "lean"):
            print(json.dumps(asyncio.run(drive(kind, f"http://127.0.0.1:{a.port}/orchestrate/run", a.n, a.c))))
    finally:
        server.terminate()


if __name__ == "__main__":
    try:  # the event loop bench/pipeline_driver.py runs on
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    main()
