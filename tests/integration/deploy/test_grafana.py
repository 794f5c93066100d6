"""Grafana provisioning (Grafana itself is not installed here, so statically): the datasource
points at the compose Prometheus, the dashboards load, every query parses (promtool) and reads
only metrics the agents export or the rules record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.deploy import (
    DASHBOARDS_DIR,
    DEPLOY,
    EXPORTED_METRICS,
    load_yaml,
    metric_names,
    promtool_check_exprs,
    recorded_names,
)

PROVISIONING = DEPLOY / "grafana" / "provisioning"
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
# Grafana's built-in interval variables; the dashboards use no variables of their own.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

# What each dashboard must show (by the series it queries).
REQUIRED = {
    "trading-overview.json": {
        "trading_daily_pnl_pct",
        "trading_equity",
        "trading_system_halted",
        "trading_halt_info",
        "trading_orders_total",
        "trading_risk_rejections_total",
    },
    "streams.json": {"stream_pending_count", "trading_dlq_messages_total", "stream_dlq_length"},
    "api.json": {"api:latency_p95_5m", "trading:error_rate_5m"},
    "agents.json": {"up", "dependency_up"},
    "alerts.json": {"ALERTS"},
}


def panels(board: dict) -> list[dict]:
    out = []
    for p in board["panels"]:
        out.append(p)
        out += p.get("panels") or []  # collapsed rows hold their panels
    return out


def targets(board: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(board) for t in p.get("targets") or []]


def expand(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown dashboard variable in {expr!r}"
    return expr


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_datasource_is_the_compose_prometheus(services: dict) -> None:
    ds = [d for f in (PROVISIONING / "datasources").glob("*.yml") for d in load_yaml(f)["datasources"]]
    assert len(ds) == 1
    assert ds[0]["type"] == "prometheus" and ds[0]["uid"] == "prometheus"
    assert ds[0]["url"] == "http://prometheus:9090" and "prometheus" in services


def test_dashboard_provider_path_is_the_mounted_folder(services: dict) -> None:
    providers = [p for f in (PROVISIONING / "dashboards").glob("*.yml") for p in load_yaml(f)["providers"]]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith("./")}
    for p in providers:
        path = p["options"]["path"]
        assert mounts.get(path) == "./deploy/grafana/dashboards", path
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS_DIR / Path(home).name).is_file()


def test_dashboards_exist() -> None:
    assert {p.name for p in DASHBOARDS} >= set(REQUIRED)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = load(path)
    assert board["uid"] and board["title"] and board["panels"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(board):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "prometheus" and t["expr"].strip(), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_every_query_parses(tmp_path: Path) -> None:
    exprs = [expand(e) for p in DASHBOARDS for _, e in targets(load(p))]
    assert exprs
    promtool_check_exprs(exprs, tmp_path)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_queries_read_known_series(path: Path) -> None:
    known = EXPORTED_METRICS | recorded_names()
    used = set()
    for title, expr in targets(load(path)):
        names = metric_names(expand(expr))
        assert names, f"{title}: no metric in {expr!r}"
        assert not names - known, f"{path.name} / {title}: unknown series {names - known}"
        used |= names
    assert REQUIRED.get(path.name, set()) <= used, REQUIRED[path.name] - used


def test_agent_job_selectors_name_every_agent() -> None:
    from tests.support.deploy import AGENTS

    for path in DASHBOARDS:
        for title, expr in targets(load(path)):
            for m in re.finditer(r'job=~"([^"]+)"', expr):
                assert set(m.group(1).split("|")) == set(AGENTS), f"{path.name} / {title}"
