"""A small real HTTP server answering what ccxt's `binance` class asks for to download candles:
`GET /api/v3/exchangeInfo` (one spot market, BTCUSDT) and `GET /api/v3/klines` (startTime,
endTime, limit as Binance reads them, at most 1000 per answer). Failures can be scripted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MARKET = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "baseAssetPrecision": 8,
    "quoteAsset": "USDT",
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "orderTypes": ["LIMIT", "MARKET"],
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": False,
    "permissions": ["SPOT"],
    "permissionSets": [["SPOT"]],
    "filters": [],
}


@dataclass
class Klines:
    candles: Sequence[Sequence[Any]]  # [ms, open, high, low, close, volume], ascending
    interval_ms: int = 3_600_000
    fail_at: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # klines call no. -> answer
    requests: list[dict[str, str]] = field(default_factory=list)  # the klines queries, in order
    paths: list[str] = field(default_factory=list)

    def klines(self, q: dict[str, str]) -> tuple[int, Any]:
        self.requests.append(q)
        if len(self.requests) in self.fail_at:
            return self.fail_at[len(self.requests)]
        if q.get("symbol") != "BTCUSDT":
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        picked = [c for c in self.candles if start <= c[0] <= end][:limit]
        return 200, [
            [c[0], *(str(v) for v in c[1:5]), str(c[5]), c[0] + self.interval_ms - 1, "0", 1, "0", "0", "0"]
            for c in picked
        ]


def _handler(state: Klines) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            url = urlsplit(self.path)
            state.paths.append(url.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == "/api/v3/exchangeInfo":
                code, body = 200, {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": [MARKET]}
            elif url.path == "/api/v3/klines":
                code, body = state.klines(query)
            else:
                code, body = 404, {"code": -1, "msg": f"no route {url.path}"}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(state: Klines) -> Iterator[str]:
    """Serve `state` on a free port of 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
