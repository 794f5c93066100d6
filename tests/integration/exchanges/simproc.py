"""Run `cli-trading exchange-sim` as a real process on a free port, and point ccxt's own
`binance` class at it (only its URLs changed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ccxt
import httpx

from tests.support import ports

KEY, SECRET = "test-key", "test-secret"


class SimProcess:
    def __init__(self, data_dir: Path, *args: str, port: int | None = None) -> None:
        self.data_dir, self.args = data_dir, list(args)
        self.port = port or ports.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SimProcess:
        cmd = [
            sys.executable,
            "-m",
            "cli_trading",
            "exchange-sim",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--api-key",
            KEY,
            "--api-secret",
            SECRET,
            *self.args,
        ]
        log = open(self.data_dir.parent / f"sim-{self.port}.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"NO_COLOR": "1"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exchange-sim exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/api/v3/time", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("exchange-sim did not answer within 30 s")

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=json, headers={"X-MBX-APIKEY": KEY}, timeout=10)
        r.raise_for_status()
        return r.json()

    def set_price(self, symbol: str, price: str, depth: str | None = None) -> Any:
        return self.admin("POST", "/sim/price", {"symbol": symbol, "price": price, "depth": depth})

    def faults(self, **plan: Any) -> Any:
        return self.admin("POST", "/sim/faults", plan)

    def client(self, secret: str = SECRET, key: str = KEY, timeout_ms: int = 10000) -> Any:
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
