#!/usr/bin/env python3
"""curl's own cost of a new TLS connection: the part of a halt's time through TLS or the edge that
no server can remove.

A C server doing nothing else (the host's nginx, `return 200` on a plain and a TLS port, the
self-signed ECDSA certificate of `cli-trading up`, no access log) is asked `--requests` times on
each path, taking turns, with the curl of the runbook on a new connection each:

- `plain`: `curl -s http://…`;
- `tls -k`: `curl -s -k https://…` (bench/halt_figures.sh's form: no certificate checked);
- `tls --cacert`: `curl -s --cacert cert.pem https://…` (the certificate checked; curl reads that
  one file, not the system's bundle).

For each: curl's phases (`-w`: time_connect, time_appconnect − time_connect = the TLS handshake,
time_total) and curl's CPU time (user + system, process start included) as medians; then, if
valgrind is installed, the instructions curl executes inside `curl_easy_perform` (the part
`time_total` covers) for one request on each path — a count that does not depend on how busy the
machine is. Wall-clock figures do: run it under `flock /work/heavy.lock` and note the load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_trading.ops.tls import self_signed

PHASES = "%{time_connect} %{time_appconnect} %{time_total}"
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{ listen 127.0.0.1:{plain}; location / {{ return 200 "ok"; }} }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(work: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    nginx = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    self_signed(work / "cert.pem", work / "key.pem", hosts=["127.0.0.1"])
    plain, tls = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=work, plain=plain, tls=tls))
    proc = subprocess.Popen([nginx, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf),  # noqa: S603
                             "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", tls)) == 0:
                return proc, plain, tls
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit("nginx did not start: " + (work / "error.log").read_text()[-500:])


def commands(work: Path, plain: int, tls: int) -> dict[str, list[str]]:
    return {
        "plain": ["curl", "-s", f"http://127.0.0.1:{plain}/"],
        "tls -k": ["curl", "-s", "-k", f"https://127.0.0.1:{tls}/"],
        "tls --cacert": ["curl", "-s", "--cacert", str(work / "cert.pem"), f"https://127.0.0.1:{tls}/"],
    }


def timed(cmd: list[str]) -> tuple[float, float, float, float]:
    """(connect, handshake, total, curl's CPU), milliseconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*cmd, "-o", "/dev/null", "-w", PHASES], capture_output=True, text=True, check=True).stdout  # noqa: S603
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    connect, appconnect, total = (float(x) for x in out.split())
    return connect * 1000, max(appconnect - connect, 0.0) * 1000, total * 1000, cpu * 1000


def instructions(cmd: list[str], work: Path) -> int | None:
    """Instructions inside curl_easy_perform (callgrind), or None without valgrind."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        return None
    out = work / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd, "-o", "/dev/null"],  # noqa: S603, S607
                   capture_output=True, check=True)
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],  # noqa: S603, S607
                            capture_output=True, text=True, check=True).stdout
    found = re.search(r"^\s*([\d,]+) .*:curl_easy_perform ", report, re.MULTILINE)
    return int(found.group(1).replace(",", "")) if found else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60, help="per path, taking turns")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nginx, plain, tls = start_nginx(work)
        try:
            cmds = commands(work, plain, tls)
            rows: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in cmds}
            for _ in range(a.requests):
                for name, cmd in cmds.items():
                    rows[name].append(timed(cmd))
            counts = {name: instructions(cmd, work) for name, cmd in cmds.items()}
        finally:
            nginx.terminate()
            nginx.wait(5)
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores), {a.requests} requests per path",
          file=sys.stderr)
    for name, values in rows.items():
        connect, handshake, total, cpu = (round(statistics.median(col), 2) for col in zip(*values, strict=True))
        print(json.dumps({"path": name, "requests": len(values), "connect_ms_p50": connect,
                          "handshake_ms_p50": handshake, "total_ms_p50": total, "curl_cpu_ms_p50": cpu,
                          "curl_easy_perform_instructions": counts[name]}))


if __name__ == "__main__":
    main()
