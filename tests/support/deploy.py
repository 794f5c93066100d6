"""Shared helpers for the deployment tests: the repository's deployment files, the external tools
that check them (promtool, amtool, nginx, openssl, psql, redis-server), and the contract lists
(agents and ports, the metrics the agents export).

The tools are looked up by path and a missing one FAILS the test, never skips it: CI installs
them (.ci/run), and a deployment check that silently does not run is worse than none."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
RUNBOOK = ROOT / "docs" / "runbook.md"

AGENT_PORTS: dict[str, int] = {
    "orchestrator": 7001,
    "portfolio-manager": 7002,
    "market-analyst": 7003,
    "risk-manager": 7004,
    "trade-executor": 7005,
    "notification-manager": 7006,
    "parameter-optimizer": 7007,
}
AGENTS = tuple(AGENT_PORTS)

# What the agents export (the metrics contract), as the names Prometheus stores.
_COUNTERS = (
    "trading_halts",
    "trading_orders",
    "trading_risk_rejections",
    "trading_decisions",
    "trading_dlq_messages",
    "http_requests",
    "admin_auth_failures",
    "notifications_sent",
)
_GAUGES = (
    "trading_system_halted",
    "trading_halt_info",
    "trading_daily_pnl_pct",
    "trading_equity",
    "stream_pending_count",
    "stream_dlq_length",
    "dependency_up",
    "incidents_open",
    # host gauges the agents export in place of a node-exporter
    "host_disk_free_ratio",
    "host_memory_available_ratio",
)
_HISTOGRAMS = ("http_request_duration_seconds",)
# prometheus_client's default process collector, and what Prometheus itself synthesises.
_RUNTIME = ("process_resident_memory_bytes", "process_cpu_seconds_total", "up", "ALERTS", "ALERTS_FOR_STATE")

# The names as the agents' code declares them (prometheus_client adds _total to counters).
DECLARED_METRICS: tuple[str, ...] = _COUNTERS + _GAUGES + _HISTOGRAMS

EXPORTED_METRICS: frozenset[str] = frozenset(
    [f"{c}_total" for c in _COUNTERS]
    + list(_GAUGES)
    + [f"{h}_{s}" for h in _HISTOGRAMS for s in ("bucket", "sum", "count")]
    + list(_RUNTIME)
)

# Where a tool lives when it is not on PATH (Debian packages: prometheus, prometheus-alertmanager,
# nginx-light, openssl, postgresql-client, redis-server).
_TOOL_PATHS = {
    "promtool": ("/usr/bin/promtool",),
    "amtool": ("/usr/bin/amtool",),
    "nginx": ("/usr/sbin/nginx",),
    "openssl": ("/usr/bin/openssl",),
    "psql": ("/usr/bin/psql",),
    "redis-server": ("/usr/bin/redis-server",),
}


def tool(name: str) -> str:
    """Absolute path of an external tool; fails the calling test when it is not installed."""
    for candidate in (shutil.which(name), *_TOOL_PATHS.get(name, ())):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(f"{name} is not installed; it is required by the deployment tests (see .ci/run)")


def run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_ok(args: list[str], **kw: object) -> str:
    """Run a command that must succeed; its stdout+stderr go into the failure message."""
    res = run(args, **kw)  # type: ignore[arg-type]
    assert res.returncode == 0, f"{' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def all_rules() -> list[dict]:
    return [r for f in rule_files() for g in load_yaml(f)["groups"] for r in g["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def runbook_sections() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^###\s+(.+)$", RUNBOOK.read_text(), re.M)}


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="session")
def services(compose: dict) -> dict:
    return compose["services"]


# -- PromQL: the metric names an expression reads ------------------------------------------------
_PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric (or recorded series) names read by a PromQL expression. A small scanner, enough for
    the expressions of this repository: strings, label matchers, ranges and grouping clauses are
    removed, then every identifier not followed by "(" (a function or aggregation) and not a
    keyword is a metric name."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def promtool_check_exprs(exprs: list[str], tmp_path: Path) -> str:
    """Parse PromQL expressions with promtool by making each a recording rule of a scratch file."""
    rules = [{"record": f"scratch:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    f = tmp_path / "scratch-rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "scratch", "rules": rules}]}, sort_keys=False))
    return run_ok([tool("promtool"), "check", "rules", str(f)])
