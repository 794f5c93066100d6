"""What the operator's console costs: how many GET /admin/overview the orchestrator serves per
second (closed loop, 1 and 8 clients), the orchestrator's CPU while one console is open, and the
console's own CPU in a real 120x40 terminal (tmux). Starts its own `cli-trading up` (embedded
Redis, SQLite) on --port-base and stops it. One JSON line per figure; record them in
docs/benchmarks.md. Run under the heavy lock: `flock /work/heavy.lock .venv/bin/python bench/console_overview.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-console-token-0123456789abcdef"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_share(pid: int, seconds: float) -> float:
    """Percent of one core a process used over `seconds` of wall time."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0), 2)


def start(data: Path, port_base: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ADMIN_TOKEN": TOKEN, "DAILY_TARGET_PCT": "1000", "DAILY_LOSS_LIMIT_PCT": "99"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    out = open(data / "up.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli_trading", "up", "--data-dir", str(data / "d"), "--port-base", str(port_base)],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if all(httpx.get(f"http://127.0.0.1:{port_base + i}/health", timeout=1).status_code == 200
                   for i in range(7)):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    raise SystemExit(f"the system did not become healthy: {(data / 'up.out').read_text()[-2000:]}")


async def closed_loop(url: str, clients: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    stop = time.monotonic() + seconds

    async def one(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            r = await http.get(url)
            r.raise_for_status()
            lat.append(time.perf_counter() - t)

    async with httpx.AsyncClient(headers={"X-Admin-Token": TOKEN}, timeout=10) as http:
        await http.get(url)  # connect and fill the caches first
        t0 = time.monotonic()
        await asyncio.gather(*(one(http) for _ in range(clients)))
        wall = time.monotonic() - t0
    lat.sort()
    return {
        "bench": "overview_closed_loop",
        "clients": clients,
        "requests": len(lat),
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1),
    }


def orchestrator_pid(port_base: int) -> int:
    pid: int = httpx.get(f"http://127.0.0.1:{port_base}/status", timeout=5).json()["pid"]
    return pid


def console_cpu(data: Path, port_base: int, seconds: float) -> dict[str, Any]:
    session = f"bench-console-{os.getpid()}"
    env = f"DATA_DIR={data / 'd'} PORT_BASE={port_base} ADMIN_TOKEN={TOKEN} TERM=xterm-256color"
    cmd = f"{env} exec {Path(sys.executable).parent / 'cli-trading'} console"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd], check=True)
    try:
        pane = int(subprocess.run(["tmux", "display", "-p", "-t", session, "#{pane_pid}"],
                                  capture_output=True, text=True, check=True).stdout)
        pid = pane if "console" in Path(f"/proc/{pane}/cmdline").read_text() else children(pane)[0]
        time.sleep(15)  # start-up (imports, first paint) is not the steady cost
        orc = orchestrator_pid(port_base)
        c0, o0, t0 = cpu_seconds(pid), cpu_seconds(orc), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        return {
            "bench": "console_cpu",
            "seconds": round(wall, 1),
            "console_cpu_pct": round(100 * (cpu_seconds(pid) - c0) / wall, 2),
            "orchestrator_cpu_pct_with_console": round(100 * (cpu_seconds(orc) - o0) / wall, 2),
            "screen_ok": "orchestrator" in screen and "equity" in screen,
        }
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port-base", type=int, default=33601)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--console-only", action="store_true", help="only the console's own CPU (3x --seconds)")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed (apt-get install tmux)")
    data = Path(tempfile.mkdtemp(prefix="bench-console-"))
    proc = start(data, args.port_base)
    try:
        time.sleep(5)
        if not args.console_only:
            orc = orchestrator_pid(args.port_base)
            print(json.dumps({"bench": "orchestrator_idle", "cpu_pct": cpu_share(orc, args.seconds)}), flush=True)
            url = f"http://127.0.0.1:{args.port_base}/admin/overview"
            for clients in (1, 8):
                print(json.dumps(asyncio.run(closed_loop(url, clients, args.seconds))), flush=True)
        print(json.dumps(console_cpu(data, args.port_base, args.seconds * 3)), flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
