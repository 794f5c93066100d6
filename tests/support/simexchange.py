"""`cli-trading exchange-sim` for tests: started on a free port in a folder of its own, driven
through its /sim/ admin endpoints and by ccxt's own `binance` class pointed at it (only its URLs
changed), stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import httpx

from tests.support import ports

KEY, SECRET = "sim-key", "sim-secret"


@dataclass
class Sim:
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(method, self.url + path, json=body, headers={"X-MBX-APIKEY": KEY}, timeout=10)
        r.raise_for_status()
        return r.json()

    def faults(self, **plan: Any) -> Any:
        return self.admin("POST", "/sim/faults", plan)

    def state(self) -> Any:
        return self.admin("GET", "/sim/state")

    def set_price(self, symbol: str, price: str, depth: str | None = None) -> Any:
        return self.admin("POST", "/sim/price", {"symbol": symbol, "price": price, "depth": depth})

    def client(self, secret: str = SECRET, key: str = KEY, timeout_ms: int = 10000) -> Any:
        """ccxt's own `binance` class with its URLs pointed at the simulator."""
        ex = ccxt.binance(
            {
                "apiKey": key,
                "secret": secret,
                "timeout": timeout_ms,
                "enableRateLimit": False,
                "options": {"fetchCurrencies": False, "fetchMarkets": {"types": ["spot"]}},
            }
        )

        def point(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: point(x) for k, x in v.items()}
            return v.replace("https://api.binance.com", self.url) if isinstance(v, str) else v

        ex.urls["api"] = point(ex.urls["api"])
        return ex

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop it with `sig` (SIGKILL: a crash, its saved state left as it was)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_sim(data_dir: Path, *args: str, port: int | None = None) -> Sim:
    port = port or ports.free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    python = os.environ.get("SIM_PYTHON", sys.executable)
    cmd = [
        python,
        "-m",
        "cli_trading",
        "exchange-sim",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
        *args,
    ]
    out = open(data_dir / "sim.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    sim = Sim(port, data_dir, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((data_dir / "sim.out").read_text()[-2000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(sim.url + "/api/v3/time", timeout=1).status_code == 200:
                return sim
        time.sleep(0.3)
    sim.stop()
    raise AssertionError("exchange-sim did not start")
