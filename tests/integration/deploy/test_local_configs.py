"""The configurations `cli-trading up --monitoring / --edge` generate from deploy/, checked by the
real tools for a non-default PORT_BASE (fast: nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli_trading.config import load_settings
from cli_trading.contracts import AGENT_PORTS
from cli_trading.ops.edge import LocalEdge
from cli_trading.ops.monitoring import LocalMonitoring
from tests.support.deploy import run_ok, tool


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("PROMETHEUS_PORT", "PROMETHEUS_SCRAPE_INTERVAL", "EDGE_PORT", "EDGE_TLS_CERT_FILE", "EDGE_TLS_KEY_FILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PROMETHEUS_PORT", "19190")
    monkeypatch.setenv("PROMETHEUS_SCRAPE_INTERVAL", "1s")
    monkeypatch.setenv("EDGE_PORT", "19443")


def test_local_prometheus_config_follows_port_base(tmp_path: Path, env: None) -> None:
    settings = load_settings(data_dir=tmp_path, port_base=21001)
    mon = LocalMonitoring(settings)
    mon.workdir.mkdir(parents=True)
    config = mon.write_config(alertmanager_addr="127.0.0.1:19193")
    run_ok([tool("promtool"), "check", "config", str(config)])
    cfg = yaml.safe_load(config.read_text())
    targets = {
        job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for job in cfg["scrape_configs"]
    }
    for agent, port in AGENT_PORTS.items():
        assert targets[agent] == [f"127.0.0.1:{port + 21001 - 7001}"], targets
    assert cfg["global"]["scrape_interval"] == "1s"
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19193"]
    # the rules are the project's own, copied beside the config
    assert sorted(p.name for p in (mon.workdir / "rules").glob("*.yml")) == sorted(
        p.name for p in (Path(__file__).resolve().parents[3] / "deploy/prometheus/rules").glob("*.yml")
    )


def test_local_edge_config_is_the_compose_one_without_oauth2(tmp_path: Path, env: None) -> None:

    settings = load_settings(data_dir=tmp_path, port_base=21001)
    edge = LocalEdge(settings)
    config = edge.write_config()
    text = config.read_text()
    err = str(tmp_path / "logs" / "nginx" / "error.log")
    run_ok([tool("nginx"), "-t", "-q", "-p", f"{edge.workdir}/", "-e", err, "-c", str(config)])
    assert "listen 127.0.0.1:19443 ssl" in text
    assert "server 127.0.0.1:21001;" in text  # the orchestrator of this run, over kept connections
    assert "proxy_pass http://orchestrator_agent;" in text and "orchestrator:7001" not in text
    assert "set $notifier_upstream     http://127.0.0.1:21006;" in text  # its incident routes
    assert "notification-manager:7006" not in text
    directives = [ln for ln in text.splitlines() if not ln.strip().startswith("#")]
    assert not [ln for ln in directives if "auth_request" in ln or "oauth2" in ln], "oauth2-proxy is compose-only"
    assert "limit_req zone=edge_admin" in text  # the rate limits stay
    assert "X-Admin-Token" in text  # the token is passed on to the orchestrator
    assert "$http_x_admin_token" not in text.split("log_format", 1)[1].split(";", 1)[0]  # never logged
    assert (tmp_path / "edge" / "tls" / "server.crt").exists()  # a self-signed certificate was made
