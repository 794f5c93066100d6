"""The nginx edge (deploy/nginx): `nginx -t` accepts it, and a real nginx running a rendered copy
of it, in front of stub upstreams, behaves as the runbook needs: OAuth2 in front, the admin token
passed to the orchestrator and to nobody else, forwarded identity not spoofable, a rate limit,
and an access log without header values.

The rendered copy differs from the shipped file only where a test machine must: upstream
hostnames become 127.0.0.1 stubs, ports become free ones, certificate/log/pid/temp paths point
into a temporary folder, and `user` is dropped."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cli_trading.ops import tls
from tests.support.deploy import DEPLOY, run_ok, tool
from tests.support.ports import free_port

NGINX_DIR = DEPLOY / "nginx"
CONF = NGINX_DIR / "nginx.conf"
TOKEN = "test-admin-token-0123456789"
SESSION = "_cli_trading_oauth2=signed-in"


def make_cert(folder: Path) -> tuple[Path, Path]:
    return tls.self_signed(folder / "server.crt", folder / "server.key", hosts=["localhost"], days=1)


def render(dest: Path, *, upstreams: dict[str, str], ports: dict[str, int] | None = None) -> Path:
    """A copy of deploy/nginx in `dest`, runnable without root and without Docker."""
    for f in NGINX_DIR.iterdir():
        shutil.copy(f, dest / f.name)
    crt, key = make_cert(dest)
    (dest / "logs").mkdir()
    (dest / "temp").mkdir()
    ports = ports or {"http": 80, "https": 443, "health": 8081}
    text = CONF.read_text()
    text = re.sub(r"^user .*;\n", "", text, flags=re.M)
    text = text.replace("/run/secrets/tls_server_crt", str(crt)).replace("/run/secrets/tls_server_key", str(key))
    text = text.replace("/var/log/nginx/", f"{dest}/logs/").replace("/var/run/nginx.pid", f"{dest}/nginx.pid")
    for host, target in upstreams.items():
        text = text.replace(f"http://{host}", f"http://{target}")
        # an upstream block's server: a fixed address (the host's nginx may predate `resolve`)
        text = text.replace(f"server {host} resolve;", f"server {target};")
    text = text.replace("listen 80 default_server;", f"listen 127.0.0.1:{ports['http']} default_server;")
    text = text.replace("listen 443 ssl default_server;", f"listen 127.0.0.1:{ports['https']} ssl default_server;")
    text = text.replace("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{ports['health']};")
    temp = "".join(
        f"    {d}_temp_path {dest}/temp/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp, 1)
    if not Path("/etc/nginx/mime.types").exists():
        (dest / "mime.types").write_text("types { text/html html; application/json json; }\n")
        text = text.replace("/etc/nginx/mime.types", str(dest / "mime.types"))
    (dest / "nginx.conf").write_text(text)
    return dest / "nginx.conf"


# -- static checks -------------------------------------------------------------------------------
def test_nginx_t_accepts_the_config(tmp_path: Path) -> None:
    conf = render(
        tmp_path,
        upstreams={
            "orchestrator:7001": "127.0.0.1:7001",
            "notification-manager:7006": "127.0.0.1:7006",
            "grafana:3000": "127.0.0.1:3000",
            "oauth2-proxy:4180": "127.0.0.1:4180",
        },
    )
    out = run_ok([tool("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "logs/error.log")])
    assert "test is successful" in out


def _locations() -> dict[str, str]:
    text = CONF.read_text()
    out = {}
    for m in re.finditer(r"location\s+(=\s*)?(\S+)\s*\{(.*?)\n        \}", text, re.S):
        out[m.group(2)] = m.group(3)
    return out


def test_access_log_records_no_header_value() -> None:
    text = CONF.read_text()
    fmt = re.search(r"log_format\s+edge\s+(.*?);", text, re.S).group(1)
    variables = set(re.findall(r"\$(\w+)", fmt))
    assert variables == {"time_iso8601", "remote_addr", "request", "status", "body_bytes_sent", "http_user_agent"}
    assert "access_log /var/log/nginx/access.log edge;" in text


def test_admin_is_behind_oauth2_and_keeps_the_token() -> None:
    loc = _locations()
    admin = loc["/admin/"]
    assert "auth_request /oauth2/auth;" in admin and "limit_req zone=" in admin
    assert "proxy_set_header X-Admin-Token $http_x_admin_token;" in admin
    assert 'proxy_set_header X-Admin-Token "";' in loc["/oauth2/auth"], "the token must not reach oauth2-proxy"
    for path in ("/", "/grafana/", "/incidents"):
        assert "auth_request /oauth2/auth;" in loc[path], path


def test_incident_admin_routes_get_the_admin_treatment() -> None:
    """/admin/incidents goes to the notification manager, guarded exactly like /admin/."""
    loc = _locations()
    admin, incidents = loc["/admin/"], loc["/admin/incidents"]
    assert "proxy_pass $notifier_upstream;" in incidents and "proxy_pass http://orchestrator_agent;" in admin
    strip = [ln.strip() for ln in incidents.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    same = [ln.strip() for ln in admin.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    # what differs is where it goes: the upstream, and the orchestrator's kept connections
    upstream = ("proxy_pass", "proxy_set_header Connection")
    assert [ln for ln in strip if not ln.startswith(upstream)] == [ln for ln in same if not ln.startswith(upstream)]
    assert "set $notifier_upstream     http://notification-manager:7006;" in CONF.read_text()


def test_compose_mounts_the_config_and_logs(services: dict) -> None:
    svc = services["nginx"]
    assert "./deploy/nginx:/etc/nginx/cli-trading:ro" in svc["volumes"]
    assert "./logs/nginx:/var/log/nginx" in svc["volumes"]
    assert svc["command"][:3] == ["nginx", "-c", "/etc/nginx/cli-trading/nginx.conf"]
    assert set(svc["secrets"]) == {"tls_server_crt", "tls_server_key"}


# -- behaviour -----------------------------------------------------------------------------------
@dataclass
class Stub:
    """An upstream that records what it receives and answers per `respond`."""

    name: str
    seen: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def respond(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"upstream": self.name, "path": path}).encode()
        return 200, {"Content-Type": "application/json"}, body

    def start(self) -> str:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps a connection open unless told to close it, as uvicorn

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.seen.append(
                    {"method": self.command, "path": self.path, "headers": headers, "peer": self.client_address}
                )
                status, extra, body = stub.respond(self.path, headers)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class OAuth2Stub(Stub):
    """oauth2-proxy in auth_request mode: 202 with the user's email for a session cookie, else 401."""

    def respond(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/oauth2/auth"):
            if SESSION in headers.get("cookie", ""):
                return 202, {"X-Auth-Request-Email": "ops@company.com"}, b""
            return 401, {}, b""
        return 200, {"Content-Type": "text/html"}, b"<html>sign in</html>"


@dataclass
class Edge:
    base: str
    http: str
    health: str
    orchestrator: Stub
    notifier: Stub
    grafana: Stub
    oauth2: Stub
    log: Path

    def get(
        self, path: str, *, session: bool = False, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> httpx.Response:
        h = dict(headers or {})
        if session:
            h["Cookie"] = SESSION
        with httpx.Client(verify=False, timeout=5) as c:  # noqa: S501 - throwaway self-signed cert
            return c.request(method, self.base + path, headers=h)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    folder = tmp_path_factory.mktemp("edge")
    stubs = {
        "orchestrator": Stub("orchestrator"),
        "notifier": Stub("notification-manager"),
        "grafana": Stub("grafana"),
        "oauth2": OAuth2Stub("oauth2"),
    }
    addr = {k: s.start() for k, s in stubs.items()}
    ports = {"http": free_port(), "https": free_port(), "health": free_port()}
    conf = render(
        folder,
        ports=ports,
        upstreams={
            "orchestrator:7001": addr["orchestrator"],
            "notification-manager:7006": addr["notifier"],
            "grafana:3000": addr["grafana"],
            "oauth2-proxy:4180": addr["oauth2"],
        },
    )
    proc = subprocess.Popen(
        [tool("nginx"), "-p", str(folder), "-c", str(conf), "-e", str(folder / "logs/error.log"), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", ports["https"]), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(
                        f"nginx did not start:\n{proc.stdout.read()}\n{(folder / 'logs/error.log').read_text()}"
                    )
                time.sleep(0.1)
        yield Edge(
            f"https://127.0.0.1:{ports['https']}",
            f"http://127.0.0.1:{ports['http']}",
            f"http://127.0.0.1:{ports['health']}",
            stubs["orchestrator"],
            stubs["notifier"],
            stubs["grafana"],
            stubs["oauth2"],
            folder / "logs/access.log",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in stubs.values():
            s.stop()


def _last(stub: Stub, path: str) -> dict:
    hits = [r for r in stub.seen if r["path"] == path]
    assert hits, f"{stub.name} never received {path}"
    return hits[-1]


def test_health_is_open_and_metrics_stay_inside(edge: Edge) -> None:
    r = edge.get("/health")
    assert r.status_code == 200 and r.json()["upstream"] == "orchestrator"
    assert edge.get("/metrics", session=True).status_code == 404
    assert not [x for x in edge.orchestrator.seen if x["path"] == "/metrics"]


def test_the_orchestrator_is_reached_over_a_kept_connection(edge: Edge) -> None:
    """Requests through the edge, each on a client connection of its own, reuse nginx's connection
    to the orchestrator: a halt through the edge does not wait for a new one to be accepted."""
    n = 8
    for _ in range(n):
        assert edge.get("/health").status_code == 200
    hits = [r for r in edge.orchestrator.seen if r["path"] == "/health"][-n:]
    assert all("connection" not in r["headers"] for r in hits), "nginx asked the orchestrator to close"
    # each nginx worker (`worker_processes auto`: one per core) keeps connections of its own
    peers = {r["peer"] for r in hits}
    assert len(peers) <= min(os.cpu_count() or 1, n - 1), f"a new upstream connection per request: {peers}"


def test_admin_without_a_session_is_refused_before_the_orchestrator(edge: Edge) -> None:
    r = edge.get("/admin/streams/pending?stream=notify.events&group=notify", headers={"X-Admin-Token": TOKEN})
    assert r.status_code == 403 and "sign in" in r.text
    assert not [x for x in edge.orchestrator.seen if x["path"].startswith("/admin/streams/pending")]
    auth = _last(edge.oauth2, "/oauth2/auth")
    assert "x-admin-token" not in auth["headers"], "the admin token leaked to oauth2-proxy"


def test_admin_with_a_session_reaches_the_orchestrator_with_the_token(edge: Edge) -> None:
    r = edge.get(
        "/admin/orchestrate/halt",
        method="POST",
        session=True,
        headers={"X-Admin-Token": TOKEN, "X-Forwarded-For": "6.6.6.6"},
    )
    assert r.status_code == 200
    seen = _last(edge.orchestrator, "/admin/orchestrate/halt")
    assert seen["method"] == "POST"
    assert seen["headers"]["x-admin-token"] == TOKEN
    assert seen["headers"]["x-forwarded-email"] == "ops@company.com"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1", "a client-supplied X-Forwarded-For got through"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert "x-admin-token" not in _last(edge.oauth2, "/oauth2/auth")["headers"]


def test_incident_actions_reach_the_notification_manager_with_the_token(edge: Edge) -> None:
    path = "/admin/incidents/7/ack"
    refused = edge.get(path, method="POST", headers={"X-Admin-Token": TOKEN})
    assert refused.status_code == 403 and "sign in" in refused.text
    assert not [x for x in edge.notifier.seen if x["path"] == path], "reached without a session"
    r = edge.get(path, method="POST", session=True, headers={"X-Admin-Token": TOKEN, "X-Forwarded-For": "6.6.6.6"})
    assert r.status_code == 200 and r.json() == {"upstream": "notification-manager", "path": path}
    seen = _last(edge.notifier, path)
    assert seen["method"] == "POST"
    assert seen["headers"]["x-admin-token"] == TOKEN
    assert seen["headers"]["x-forwarded-email"] == "ops@company.com"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1", "a client-supplied X-Forwarded-For got through"
    assert not [x for x in edge.orchestrator.seen if x["path"].startswith("/admin/incidents")]
    # opening one too (the exact prefix), and the rest of /admin/ still goes to the orchestrator
    assert edge.get("/admin/incidents", method="POST", session=True).json()["upstream"] == "notification-manager"
    assert edge.get("/admin/overview", session=True).json()["upstream"] == "orchestrator"


def test_incidents_are_read_signed_in_without_the_token(edge: Edge) -> None:
    assert edge.get("/incidents?state=open").status_code == 403
    r = edge.get("/incidents?state=open", session=True, headers={"X-Admin-Token": TOKEN})
    assert r.status_code == 200 and r.json()["upstream"] == "notification-manager"
    assert "x-admin-token" not in _last(edge.notifier, "/incidents?state=open")["headers"]
    assert edge.get("/incidents/7/postmortem", session=True).json()["path"] == "/incidents/7/postmortem"
    assert edge.get("/incidents/7", method="POST", session=True).status_code == 403  # read-only
    assert not [x for x in edge.notifier.seen if x["method"] == "POST" and x["path"] == "/incidents/7"]


def test_placing_an_order_needs_a_session(edge: Edge) -> None:
    r = edge.get("/orchestrate/run", method="POST")
    assert r.status_code == 403
    assert not [x for x in edge.orchestrator.seen if x["path"] == "/orchestrate/run"]
    assert edge.get("/pnl/status", session=True).status_code == 200


def test_grafana_gets_the_signed_in_user_and_not_the_token(edge: Edge) -> None:
    assert edge.get("/grafana/api/health").status_code == 403
    r = edge.get(
        "/grafana/d/cli-trading-overview",
        session=True,
        headers={"X-WEBAUTH-EMAIL": "attacker@evil.example", "X-Admin-Token": TOKEN},
    )
    assert r.status_code == 200 and r.json()["upstream"] == "grafana"
    seen = _last(edge.grafana, "/grafana/d/cli-trading-overview")
    assert seen["headers"]["x-webauth-email"] == "ops@company.com"
    assert "x-admin-token" not in seen["headers"]


def test_plain_http_redirects_and_healthcheck_answers(edge: Edge) -> None:
    r = httpx.get(edge.http + "/pnl/status", follow_redirects=False, timeout=5)
    assert r.status_code == 301 and r.headers["location"].startswith("https://")
    assert httpx.get(edge.health + "/nginx-health", timeout=5).text == "ok\n"


def test_admin_rate_limit(edge: Edge) -> None:
    codes = [edge.get("/admin/streams", session=True, headers={"X-Admin-Token": TOKEN}).status_code for _ in range(30)]
    assert 429 in codes and 200 in codes


def test_access_log_has_no_header_values_and_serves_the_runbook_grep(edge: Edge) -> None:
    # /pnl/status (not /admin/: the rate-limit test may have used up the admin budget)
    edge.get(
        "/pnl/status?verbose=1",
        headers={"X-Admin-Token": TOKEN, "User-Agent": "runbook-test", "Cookie": "_cli_trading_oauth2=expired-session"},
    )
    time.sleep(0.2)
    log = edge.log.read_text()
    for secret in (TOKEN, "signed-in", "expired-session", "ops@company.com"):
        assert secret not in log
    line = re.compile(r'^\S+ 127\.0\.0\.1 "GET /pnl/status\?verbose=1 HTTP/1\.1" 403 \d+ "runbook-test"$', re.M)
    assert line.search(log), log[-2000:]
    # the runbook: grep -E "(401|403|429)" /var/log/nginx/access.log
    assert re.search(r"(401|403|429)", log)
