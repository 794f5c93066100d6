"""The console's client: with one base URL (the edge) every call it makes goes there, incidents
included; a 429 from the edge's rate limit is passing, the agent's lockout 429 is not. Against a
real HTTP server on a local socket."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli_trading.cli.client import Target
from cli_trading.console.client import ConsoleClient, Endpoint, RateLimited, Refused, Unauthorized

NGINX_429 = b"<html><head><title>429 Too Many Requests</title></head><body>nginx</body></html>"


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """Answers by path: /edge-429 like nginx's limit_req, /lockout like the agent's lockout."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            seen.append(f"{self.command} {self.path}")
            if self.path.startswith("/edge-429"):
                status, ctype, body = 429, "text/html", NGINX_429
            elif self.path.startswith("/lockout"):
                doc = {"error": "too many failed authentications from this address", "retryAfter": 30}
                status, ctype, body = 429, "application/json", json.dumps(doc).encode()
            else:
                status, ctype, body = 200, "application/json", json.dumps({"path": self.path}).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _any  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_the_base_url_serves_the_orchestrator_and_the_incidents_only() -> None:
    target = Target(port_base=21001, token="t")
    edge = Endpoint(target, "https://edge.example:8443/")
    assert edge.url("orchestrator") == "https://edge.example:8443"
    assert edge.url("notification-manager") == "https://edge.example:8443"
    assert edge.url("risk-manager") == "http://127.0.0.1:21004"  # not published on the edge
    direct = Endpoint(target)
    assert direct.url("notification-manager") == "http://127.0.0.1:21006"


async def test_an_incident_is_acknowledged_at_the_base_url(server: tuple[str, list[str]]) -> None:
    base, seen = server
    client = ConsoleClient(Endpoint(Target(port_base=1, token="t"), base))  # port 6: nothing there
    try:
        answer = await client.incident(7, "ack", {"by": "ops"})
    finally:
        await client.close()
    assert answer == {"path": "/admin/incidents/7/ack"} and seen == ["POST /admin/incidents/7/ack"]


async def test_the_edge_rate_limit_is_not_a_refused_token(server: tuple[str, list[str]]) -> None:
    base, _ = server
    client = ConsoleClient(Endpoint(Target(token="t"), base))
    try:
        with pytest.raises(RateLimited, match="rate limit") as limited:
            await client.request("GET", "/edge-429/admin/overview")
        assert not isinstance(limited.value, (Unauthorized, Refused))
        with pytest.raises(Unauthorized, match="too many failed authentications"):
            await client.request("GET", "/lockout/admin/overview")
    finally:
        await client.close()
