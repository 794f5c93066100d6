#!/usr/bin/env python3
"""CPU per request of an agent's HTTP path alone: uvicorn on the server thread (agents/server.py)
handing each request to the agent's event loop and back (`OnLoop`), with an app that answers at
once (a 202 with a small JSON body), under an aiohttp closed loop from a process of its own. The
agent's loop also runs a task that wakes every millisecond, as a busy agent's does.

Prints one JSON line: the server process's CPU (user + system) per request, the server thread's
and the agent loop's apart. Compare changes of agents/server.py with interleaved runs (A, B, A, B).

    .venv/bin/python bench/http_crossing.py -n 20000 -c 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import uvloop

from cli_trading.agents.server import OnLoop, agent_server

TICK = os.sysconf("SC_CLK_TCK")
BODY = b'{"symbol": "BTC-USD", "side": "buy", "notional": "10"}'

CLIENT = r"""
import asyncio, sys, aiohttp
async def main(url, n, c):
    left = [n]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:
        async def one():
            while left[0] > 0:
                left[0] -= 1
                async with s.post(url, data=sys.argv[4].encode()) as r:
                    await r.read()
                    assert r.status == 202, r.status
        await asyncio.gather(*(one() for _ in range(c)))
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "http.request"
    body = b'{"requestId": "x", "status": "accepted", "state": "risk"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def thread_cpu_s(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(n: int, c: int) -> dict[str, Any]:
    stop = asyncio.Event()

    async def ticking() -> None:  # a busy agent's loop wakes often for its own work
        while not stop.is_set():  # noqa: ASYNC110 - the wake-ups are the point
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(ticking())
    port = free_port()
    server = agent_server(
        OnLoop(app, asyncio.get_running_loop()), host="127.0.0.1", port=port, cert=None, key=None, on_exit=lambda: None
    )
    server.start()
    loop_tid = threading.get_native_id()
    server_tid = server._thread.native_id  # noqa: SLF001 - a benchmark's look inside
    assert server_tid is not None
    url = f"http://127.0.0.1:{port}/orchestrate/run"

    async def client(k: int) -> None:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, str(k), str(c), BODY.decode())
        assert await proc.wait() == 0

    await client(2000)  # warm-up
    before = (time.process_time(), thread_cpu_s(server_tid), thread_cpu_s(loop_tid), time.perf_counter())
    await client(n)
    after = (time.process_time(), thread_cpu_s(server_tid), thread_cpu_s(loop_tid), time.perf_counter())
    stop.set()
    await ticker
    await asyncio.to_thread(server.stop)
    us = [1e6 * (a - b) / n for a, b in zip(after, before, strict=True)]
    return {
        "requests": n,
        "clients": c,
        "cpu_us_per_request": round(us[0], 1),
        "server_thread_us": round(us[1], 1),
        "agent_loop_us": round(us[2], 1),
        "requests_per_s": round(n / (after[3] - before[3])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="requests measured (after 2,000 of warm-up)")
    ap.add_argument("-c", type=int, default=16, help="concurrent clients")
    args = ap.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(measure(args.n, args.c))))


if __name__ == "__main__":
    main()
