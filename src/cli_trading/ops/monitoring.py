"""`cli-trading up --monitoring`: Prometheus (and Alertmanager when installed) beside the agents of
a single-machine run, with the project's own rules, so the runbook's
`curl http://localhost:9090/api/v1/query?query=api:latency_p95_5m` works on one machine too.

The configuration is `deploy/prometheus/prometheus-local.yml` adapted to this run (agent ports
from PORT_BASE, this run's Prometheus and Alertmanager ports) with the rules of
`deploy/prometheus/rules/` — the same rules and job names the compose deployment uses.
Everything lives under `<data-dir>/monitoring/`;
logs go to `<logs>/prometheus.log` and `<logs>/alertmanager.log`.

Environment (all optional):
  PROMETHEUS_PORT              web port of Prometheus (9090)
  PROMETHEUS_SCRAPE_INTERVAL   scrape interval (the file's 15s); PROMETHEUS_EVALUATION_INTERVAL (same)
  ALERTMANAGER_PORT            web port of Alertmanager (9093); MONITORING_ALERTMANAGER=0 skips it
  CLI_TRADING_DEPLOY_DIR       the deploy/ folder (default: the one of this checkout)
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from cli_trading.config import Settings
from cli_trading.contracts import AGENT_PORTS
from cli_trading.supervisor import UpError, console

PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


def deploy_dir() -> Path:
    """The deploy/ folder: CLI_TRADING_DEPLOY_DIR, else the checkout this module runs from, else ./deploy."""
    env = os.environ.get("CLI_TRADING_DEPLOY_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[3] / "deploy", Path.cwd() / "deploy"]
    for c in candidates:
        if (c / "prometheus").is_dir():
            return c
    raise UpError(
        "deploy/ folder not found (it ships with the source checkout): run from the checkout "
        "or set CLI_TRADING_DEPLOY_DIR=/path/to/cli-trading/deploy"
    )


def find_binary(names: tuple[str, ...]) -> str | None:
    for n in names:
        found = shutil.which(n) or next((p for p in (f"/usr/bin/{n}", f"/usr/sbin/{n}") if os.access(p, os.X_OK)), None)
        if found:
            return found
    return None


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise UpError(f"{name}={raw!r} is not a port number") from exc


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def local_host(settings: Settings) -> str:
    """Where the agents of this run answer (and where the local tools listen)."""
    return "127.0.0.1" if settings.bind_host in ("", "0.0.0.0", "::") else settings.bind_host  # noqa: S104 - a comparison


class Daemon:
    """A helper process of the local run: in the process group of `up`, output in a log file,
    ready when an HTTP probe answers, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, cmd: list[str], log: Path, ready_url: str | None, *, verify: bool = True) -> None:
        self.name, self.cmd, self.log, self.ready_url, self.verify = name, cmd, log, ready_url, verify
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - argv of our own: a packaged tool and its options
            self.cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )  # same process group as `up`: a kill of the group takes it along
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise UpError(f"{self.name} exited at start (code {self.proc.returncode}): {self.tail()}")
            if self.ready_url is None or self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise UpError(f"{self.name} not ready after {timeout:.0f}s: {self.tail()}")

    def _ready(self) -> bool:
        if self.ready_url is None:
            return True
        try:
            return httpx.get(self.ready_url, timeout=1, verify=self.verify).status_code < 500
        except httpx.HTTPError:
            return False

    def tail(self, n: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-n:])
        return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


def render_prometheus_config(
    base: dict[str, Any],
    settings: Settings,
    *,
    rules_glob: Path,
    prometheus_addr: str,
    alertmanager_addr: str | None,
    scrape_interval: str | None,
    evaluation_interval: str | None,
) -> dict[str, Any]:
    """`deploy/prometheus/prometheus-local.yml` adapted to this run: agent targets on the ports of
    PORT_BASE, rules by absolute path, this run's Alertmanager (or none), optional intervals."""
    cfg = copy.deepcopy(base)
    by_port = {port: agent for agent, port in AGENT_PORTS.items()}
    host = local_host(settings)
    glob = cfg.setdefault("global", {})
    if scrape_interval:
        glob["scrape_interval"] = scrape_interval
        glob["scrape_timeout"] = (
            scrape_interval if _seconds(scrape_interval) < 10 else glob.get("scrape_timeout", "10s")
        )
    if evaluation_interval:
        glob["evaluation_interval"] = evaluation_interval
    cfg["rule_files"] = [str(rules_glob)]
    if alertmanager_addr:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_addr]}]}]}
    else:
        cfg.pop("alerting", None)
    for job in cfg.get("scrape_configs", []):
        if settings.tls_cert_file and job.get("job_name") in AGENT_PORTS:
            # agents serve HTTPS themselves (TLS_CERT_FILE): scrape them over TLS on loopback
            job["scheme"] = "https"
            job["tls_config"] = {"insecure_skip_verify": True}
        for sc in job.get("static_configs", []):
            targets = []
            for t in sc.get("targets", []):
                port = int(str(t).rsplit(":", 1)[1])
                if port in by_port:
                    targets.append(f"{host}:{settings.port_of(by_port[port])}")
                elif port == 9090:
                    targets.append(prometheus_addr)
                else:
                    targets.append(t)
            sc["targets"] = targets
    return cfg


def _seconds(interval: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if interval.endswith(suffix):
            return float(interval[: -len(suffix)]) * units[suffix]
    raise UpError(f"interval {interval!r}: use a Prometheus duration like 15s")


class LocalMonitoring:
    """Prometheus (+ Alertmanager if installed) for `cli-trading up --monitoring`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = local_host(settings)
        self.port = env_int("PROMETHEUS_PORT", 9090)
        self.am_port = env_int("ALERTMANAGER_PORT", 9093)
        self.scrape_interval = os.environ.get("PROMETHEUS_SCRAPE_INTERVAL") or None
        self.evaluation_interval = os.environ.get("PROMETHEUS_EVALUATION_INTERVAL") or self.scrape_interval
        self.want_alertmanager = os.environ.get("MONITORING_ALERTMANAGER", "1") not in ("0", "false", "no")
        self.workdir = settings.data_dir / "monitoring"
        self.daemons: list[Daemon] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_config(self, *, alertmanager_addr: str | None) -> Path:
        deploy = deploy_dir()
        rules = self.workdir / "rules"
        if rules.exists():
            shutil.rmtree(rules)
        shutil.copytree(deploy / "prometheus" / "rules", rules)
        base = yaml.safe_load((deploy / "prometheus" / "prometheus-local.yml").read_text())
        cfg = render_prometheus_config(
            base,
            self.settings,
            rules_glob=rules.resolve() / "*.yml",
            prometheus_addr=f"{self.host}:{self.port}",
            alertmanager_addr=alertmanager_addr,
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.evaluation_interval,
        )
        config = self.workdir / "prometheus.yml"
        header = "# Generated by cli-trading up --monitoring from deploy/prometheus/prometheus-local.yml\n"
        config.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
        return config

    def start(self) -> None:
        prometheus = find_binary(PROMETHEUS_BINARIES)
        if not prometheus:
            raise UpError("--monitoring needs Prometheus: apt-get install prometheus (or put it on PATH)")
        if not port_free(self.host, self.port):
            raise UpError(f"port {self.port} is in use: stop what serves it or set PROMETHEUS_PORT")
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.settings.logs_path
        am_addr = self._start_alertmanager(logs)
        config = self.write_config(alertmanager_addr=am_addr)
        prom = Daemon(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                "--storage.tsdb.retention.time=15d",
                f"--web.listen-address={self.host}:{self.port}",
                f"--web.external-url={self.url}",
            ],
            logs / "prometheus.log",
            f"{self.url}/-/ready",
        )
        try:
            prom.start()
        except UpError:
            self.stop()
            raise
        self.daemons.append(prom)
        console.print(f"[green]prometheus[/green] {self.url} (rules from deploy/prometheus/rules)")

    def _start_alertmanager(self, logs: Path) -> str | None:
        binary = find_binary(ALERTMANAGER_BINARIES) if self.want_alertmanager else None
        if not binary:
            return None
        if not port_free(self.host, self.am_port):
            console.print(f"[yellow]alertmanager: port {self.am_port} in use, not started (ALERTMANAGER_PORT)[/yellow]")
            return None
        am = Daemon(
            "alertmanager",
            [
                binary,
                f"--config.file={deploy_dir() / 'alertmanager' / 'alertmanager.local.yml'}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={self.host}:{self.am_port}",
                "--cluster.listen-address=",
            ],
            logs / "alertmanager.log",
            f"http://{self.host}:{self.am_port}/-/ready",
        )
        try:
            am.start()
        except UpError as exc:
            console.print(f"[yellow]alertmanager not started: {exc}[/yellow]")
            return None
        self.daemons.append(am)
        console.print(f"[green]alertmanager[/green] http://{self.host}:{self.am_port}")
        return f"{self.host}:{self.am_port}"

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        self.daemons.clear()
