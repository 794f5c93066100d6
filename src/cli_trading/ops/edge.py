"""`cli-trading up --edge`: the compose deployment's nginx edge (`deploy/nginx/nginx.conf`) run by
the host's nginx (Debian package) in front of a single-machine run.

The same configuration, adapted to one machine: the agents' ports of this run (PORT_BASE: the
orchestrator's, and the notification manager's for the incident routes), the
HTTPS port EDGE_PORT (8443), the certificate EDGE_TLS_CERT_FILE/EDGE_TLS_KEY_FILE (a self-signed
one is generated under `<data-dir>/edge/tls/` when none is given; TLS_CERT_FILE is the agents'
own), files under `<data-dir>/edge/`, the access log in `<logs>/nginx/access.log` (same format:
no header value ever reaches it).
What is left out: oauth2-proxy (not packaged for Debian), so the local edge has TLS, the rate
limits and the orchestrator's X-Admin-Token check, but no OAuth2 sign-in; and the plain-HTTP
redirect and container healthcheck servers.

Environment (all optional): EDGE_PORT, EDGE_GRAFANA_URL (http://127.0.0.1:3000),
CLI_TRADING_DEPLOY_DIR, NGINX (the nginx binary).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from cli_trading.config import Settings
from cli_trading.ops import tls
from cli_trading.ops.monitoring import Daemon, deploy_dir, env_int, find_binary, local_host, port_free
from cli_trading.supervisor import UpError, console


def _remove_blocks(text: str, header: re.Pattern[str]) -> str:
    """Drop every `... {` block whose header line matches, with its nested braces."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if header.search(lines[i]) and lines[i].rstrip().endswith("{"):
            depth = 0
            while i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                i += 1
                if depth <= 0:
                    break
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out) + "\n"


def _server_blocks_without(text: str, needle: str) -> str:
    """Drop the `server { ... }` blocks that contain `needle` (the HTTP redirect, the healthcheck)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if re.match(r"^\s*server\s*\{\s*$", lines[i]):
            start, depth = i, 0
            while i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                i += 1
                if depth <= 0:
                    break
            block = lines[start:i]
            if not any(needle in b for b in block):
                out.extend(block)
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out) + "\n"


def _sub(text: str, pattern: str, repl: str, *, required: bool = True) -> str:
    new, n = re.subn(pattern, lambda _: repl, text, flags=re.MULTILINE)
    if required and n == 0:
        raise UpError(f"deploy/nginx/nginx.conf changed: no line matches {pattern!r} (update cli_trading.ops.edge)")
    return new


def worker_user() -> str | None:
    """nginx started by root needs an unprivileged worker user; otherwise it keeps ours."""
    if os.geteuid() != 0:
        return None
    for name in ("www-data", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return f"{name} {grp.getgrgid(pw.pw_gid).gr_name}"
    return None


def render_local_nginx(
    conf: str,
    *,
    orchestrator: str,
    notifier: str,
    grafana: str,
    listen: str,
    cert: Path,
    key: Path,
    workdir: Path,
    logs: Path,
    user: str | None,
) -> str:
    """The compose nginx.conf for the host's nginx: paths, ports and upstreams of this run, and
    without oauth2-proxy (its locations and auth_request lines)."""
    text = _sub(conf, r"^\s*user\s+[^;]+;", f"user {user};" if user else "# user: the invoking user")
    text = _sub(text, r"^\s*pid\s+[^;]+;", f"pid {workdir / 'nginx.pid'};")
    text = _sub(text, r"^\s*error_log\s+[^;]+;", f"error_log {logs / 'error.log'} warn;")
    text = _sub(text, r"access_log\s+/var/log/nginx/access\.log", f"access_log {logs / 'access.log'}")
    text = _sub(text, r"^\s*resolver(_timeout)?\s+[^;]+;\n", "", required=False)
    text = _server_blocks_without(text, "listen 80")
    text = _server_blocks_without(text, "listen 127.0.0.1:8081")
    text = _sub(text, r"listen\s+443\s+ssl", f"listen {listen} ssl")
    text = _sub(text, r"ssl_certificate\s+[^;]+;", f"ssl_certificate {cert};")
    text = _sub(text, r"ssl_certificate_key\s+[^;]+;", f"ssl_certificate_key {key};")
    # the orchestrator's upstream block: this run's address (no DNS to follow on one machine; and
    # `resolve` needs nginx >= 1.27.3, Debian's is older), and its scheme where it is passed to
    scheme, _, address = orchestrator.partition("://")
    text = _sub(text, r"server\s+orchestrator:7001\s+resolve;", f"server {address};")
    text = _sub(text, r"proxy_pass\s+http://orchestrator_agent;", f"proxy_pass {scheme}://orchestrator_agent;")
    text = _sub(text, r"http://notification-manager:7006", notifier)
    text = _sub(text, r"http://grafana:3000", grafana, required=False)
    # no oauth2-proxy on the host: its locations, the auth_request checks and what they set
    text = _remove_blocks(text, re.compile(r"^\s*location\s+(=\s*)?/oauth2/"))
    text = "\n".join(
        line
        for line in text.splitlines()
        if not re.search(r"auth_request|\$auth_email|oauth2_upstream|/oauth2/sign_in", line)
    )
    temp = "\n".join(
        f"    {name}_temp_path {workdir / 'tmp' / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _sub(text, r"^http\s*\{", "http {\n" + temp)
    if "oauth2" in text.replace("# ", ""):
        leftover = [ln for ln in text.splitlines() if "oauth2" in ln and not ln.strip().startswith("#")]
        if leftover:
            raise UpError(f"deploy/nginx/nginx.conf: oauth2 lines left for the local edge: {leftover[:2]}")
    return text + "\n"


def self_signed(tls_dir: Path, host: str) -> tuple[Path, Path]:
    """A throw-away certificate for localhost (the compose edge uses ./secrets/tls/)."""
    cert, key = tls_dir / "server.crt", tls_dir / "server.key"
    if cert.exists() and key.exists():
        return cert, key
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return tls.self_signed(cert, key, hosts=["localhost", "127.0.0.1", host])


class LocalEdge:
    """nginx with TLS and rate limits in front of the orchestrator (and the notification
    manager's incident routes) of a local run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = local_host(settings)
        self.port = env_int("EDGE_PORT", 8443)
        self.grafana = os.environ.get("EDGE_GRAFANA_URL") or "http://127.0.0.1:3000"
        self.workdir = settings.data_dir / "edge"
        self.logs = settings.logs_path / "nginx"
        self.daemon: Daemon | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def write_config(self) -> Path:
        deploy = deploy_dir() / "nginx"
        for d in (self.workdir / "tmp", self.logs):
            d.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = os.environ.get("EDGE_TLS_CERT_FILE"), os.environ.get("EDGE_TLS_KEY_FILE")
        if cert_file and key_file:
            cert, key = Path(cert_file).resolve(), Path(key_file).resolve()
        else:
            cert, key = self_signed(self.workdir / "tls", self.host)
        for extra in deploy.glob("*.conf"):
            if extra.name != "nginx.conf":
                shutil.copy(extra, self.workdir / extra.name)
        scheme = "https" if self.settings.tls_cert_file else "http"  # agents may serve TLS themselves
        user = worker_user()
        if user:  # workers write the temp folders
            pw = pwd.getpwnam(user.split()[0])
            for d in (self.workdir / "tmp",):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        text = render_local_nginx(
            (deploy / "nginx.conf").read_text(),
            orchestrator=f"{scheme}://{self.host}:{self.settings.port_of('orchestrator')}",
            notifier=f"{scheme}://{self.host}:{self.settings.port_of('notification-manager')}",
            grafana=self.grafana,
            listen=f"{self.host}:{self.port}",
            cert=cert,
            key=key,
            workdir=self.workdir.resolve(),
            logs=self.logs.resolve(),
            user=user,
        )
        config = self.workdir / "nginx.conf"
        config.write_text(text)
        return config

    def start(self) -> None:
        nginx = os.environ.get("NGINX") or find_binary(("nginx",))
        if not nginx:
            raise UpError("--edge needs nginx: apt-get install nginx-light (or put it on PATH)")
        if not port_free(self.host, self.port):
            raise UpError(f"port {self.port} is in use: stop what serves it or set EDGE_PORT")
        config = self.write_config().resolve()
        prefix = str(self.workdir.resolve()) + "/"
        err = str(self.logs.resolve() / "error.log")
        test = subprocess.run(  # noqa: S603 - argv of our own: the nginx binary, files we wrote
            [nginx, "-t", "-q", "-p", prefix, "-e", err, "-c", str(config)], capture_output=True, text=True
        )
        if test.returncode != 0:
            raise UpError(f"nginx rejects {config}: {(test.stderr or test.stdout).strip()[-500:]}")
        self.daemon = Daemon(
            "nginx",
            [nginx, "-p", prefix, "-e", err, "-c", str(config), "-g", "daemon off;"],
            self.settings.logs_path / "nginx" / "nginx.out",
            f"{self.url}/health",
            verify=False,
        )
        self.daemon.start()
        console.print(
            f"[green]edge[/green] {self.url} (TLS, rate limits, X-Admin-Token; no OAuth2 locally) "
            f"access log {self.logs / 'access.log'}"
        )

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None
