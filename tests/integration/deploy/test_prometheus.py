"""Prometheus: both configurations and every rule file pass promtool, every rule has a unit test
that passes, alerts carry the runbook's classification, and rules read only metrics the agents
export."""

from __future__ import annotations

import pytest

from tests.support.deploy import (
    AGENT_PORTS,
    DECLARED_METRICS,
    DEPLOY,
    EXPORTED_METRICS,
    ROOT,
    RULE_TESTS_DIR,
    all_rules,
    load_yaml,
    metric_names,
    recorded_names,
    rule_files,
    run_ok,
    runbook_sections,
    tool,
)

PROM_DIR = DEPLOY / "prometheus"

# The runbook's classification, as the alerts must implement it: name → (severity, category).
EXPECTED_ALERTS = {
    "TradingSystemHalted": ("P0", "trading"),
    "DailyLossLimit": ("P0", "trading"),
    "CompleteSystemOutage": ("P0", "infrastructure"),
    "FailedAuthSpike": ("P0", "security"),
    "AgentDown": ("P1", "infrastructure"),
    "HighErrorRate": ("P1", "infrastructure"),
    "RedisDown": ("P1", "infrastructure"),
    "PostgresDown": ("P1", "infrastructure"),
    "HighLatency": ("P2", "infrastructure"),
    "StreamPendingHigh": ("P2", "infrastructure"),
    "DLQGrowing": ("P2", "infrastructure"),
    "DiskPressure": ("P2", "infrastructure"),
    "MemoryPressure": ("P2", "infrastructure"),
}


def alerts() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def test_rule_files_pass_promtool() -> None:
    files = rule_files()
    assert files
    run_ok([tool("promtool"), "check", "rules", *map(str, files)])


def test_rule_unit_tests_pass() -> None:
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests
    out = run_ok([tool("promtool"), "test", "rules", *map(str, tests)], cwd=RULE_TESTS_DIR)
    assert "FAILED" not in out


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-local.yml"])
def test_configs_pass_promtool(config: str) -> None:
    out = run_ok([tool("promtool"), "check", "config", str(PROM_DIR / config)])
    # the rule files are found through the config (paths relative to it)
    assert f"{len(rule_files())} rule files found" in out


def test_recording_rules_the_runbook_queries() -> None:
    assert {"api:latency_p95_5m", "trading:error_rate_5m"} <= recorded_names()


def test_alerts_carry_the_runbook_classification() -> None:
    found = {a["alert"]: a for a in alerts()}
    missing = set(EXPECTED_ALERTS) - set(found)
    assert not missing, f"alerts missing: {missing}"
    for name, (severity, category) in EXPECTED_ALERTS.items():
        labels = found[name]["labels"]
        assert (labels["severity"], labels["category"]) == (severity, category), name
    assert found["AgentDown"].get("for") == "1m"


def test_every_alert_is_labelled_and_annotated() -> None:
    sections = runbook_sections()
    for a in alerts():
        labels, ann = a.get("labels") or {}, a.get("annotations") or {}
        assert labels.get("severity") in {"P0", "P1", "P2", "P3"}, a["alert"]
        assert labels.get("category") in {"trading", "security", "infrastructure"}, a["alert"]
        assert ann.get("summary") and ann.get("description"), a["alert"]
        assert ann.get("runbook") in sections, (
            f"{a['alert']}: runbook section {ann.get('runbook')!r} not in the runbook"
        )


def test_every_rule_has_a_unit_test() -> None:
    tested_alerts, fired_alerts, tested_exprs = set(), set(), []
    for f in RULE_TESTS_DIR.glob("*.yml"):
        for case in load_yaml(f)["tests"]:
            for t in case.get("alert_rule_test") or []:
                tested_alerts.add(t["alertname"])
                if t.get("exp_alerts"):
                    fired_alerts.add(t["alertname"])
            tested_exprs += [t["expr"] for t in case.get("promql_expr_test") or []]
    names = {a["alert"] for a in alerts()}
    assert not names - fired_alerts, f"alerts never shown to fire in a test: {names - fired_alerts}"
    assert not tested_alerts - names, f"tests of unknown alerts: {tested_alerts - names}"
    untested = {r for r in recorded_names() if not any(r in metric_names(e) for e in tested_exprs)}
    assert not untested, f"recording rules without a test: {untested}"


def test_rules_read_only_exported_metrics() -> None:
    known = EXPORTED_METRICS | recorded_names()
    for r in all_rules():
        unknown = metric_names(r["expr"]) - known
        assert not unknown, f"{r.get('alert') or r.get('record')} reads unknown metrics {unknown}"


def test_the_agents_declare_every_metric_the_rules_and_dashboards_use() -> None:
    """The contract list above is what the code exports: each name is declared in src/cli_trading."""
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "cli_trading").rglob("*.py"))
    missing = [m for m in DECLARED_METRICS if f'"{m}"' not in source]
    assert not missing, f"metrics used by deploy/ but declared nowhere in src/cli_trading: {missing}"


def _jobs(config: dict) -> dict[str, dict]:
    return {j["job_name"]: j for j in config["scrape_configs"]}


def test_compose_config_scrapes_each_agent_by_service_name() -> None:
    cfg = load_yaml(PROM_DIR / "prometheus.yml")
    jobs = _jobs(cfg)
    assert set(AGENT_PORTS) <= set(jobs)
    for name, port in AGENT_PORTS.items():
        job = jobs[name]
        if "dns_sd_configs" in job:  # a scalable agent: every replica is a target
            sd = job["dns_sd_configs"][0]
            assert sd["names"] == [name] and sd["port"] == port and sd["type"] == "A"
        else:
            assert job["static_configs"][0]["targets"] == [f"{name}:{port}"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert jobs["notification-manager"].get("dns_sd_configs"), "notification-manager scales: discover replicas"


def test_local_config_scrapes_loopback_ports() -> None:
    cfg = load_yaml(PROM_DIR / "prometheus-local.yml")
    jobs = _jobs(cfg)
    for name, port in AGENT_PORTS.items():
        assert jobs[name]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
    compose_cfg = load_yaml(PROM_DIR / "prometheus.yml")
    assert cfg["rule_files"] == compose_cfg["rule_files"]
    assert cfg["global"] == compose_cfg["global"]
