"""Alertmanager: amtool accepts the configuration, and the routing tree sends each class of alert
to the runbook's channels (checked with amtool's own route tester)."""

from __future__ import annotations

import re

import pytest

from tests.support.deploy import DEPLOY, all_rules, load_yaml, run_ok, tool

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_config_passes_amtool() -> None:
    out = run_ok([tool("amtool"), "check-config", str(CONFIG)])
    assert "SUCCESS" in out


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=P0", "category=trading"], {"trading-critical-page"}),
        (["severity=P1", "category=trading"], {"trading-critical"}),
        (["severity=P2", "category=trading"], {"trading-alerts"}),
        (["severity=P3", "category=trading"], {"trading-alerts"}),
        (["severity=P0", "category=security"], {"security", "trading-critical-page"}),
        (["severity=P1", "category=infrastructure"], {"ops-team", "trading-critical"}),
        (["severity=P2", "category=infrastructure"], {"ops-team", "trading-alerts"}),
        (["alertname=SomethingUnclassified"], {"trading-alerts"}),
    ],
)
def test_routing(labels: list[str], receivers: set[str]) -> None:
    out = run_ok([tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}", *labels])
    line = [ln for ln in out.splitlines() if ln and not ln.startswith("Warning")][0]
    assert set(line.strip().split(",")) == receivers


def _receivers() -> dict[str, dict]:
    return {r["name"]: r for r in load_yaml(CONFIG)["receivers"]}


@pytest.mark.parametrize(
    ("receiver", "slack", "emails", "pagerduty"),
    [
        ("trading-critical-page", ["#trading-critical"], ["trading-oncall@company.com"], True),
        ("trading-critical", ["#trading-critical"], [], False),
        ("trading-alerts", ["#trading-alerts"], [], False),
        ("security", ["#security-immediate"], ["security@company.com"], False),
        ("ops-team", ["#ops-team"], [], False),
    ],
)
def test_receivers_reach_the_runbook_contacts(
    receiver: str, slack: list[str], emails: list[str], pagerduty: bool
) -> None:
    r = _receivers()[receiver]
    assert [s["channel"] for s in r.get("slack_configs") or []] == slack
    assert [e["to"] for e in r.get("email_configs") or []] == emails
    assert bool(r.get("pagerduty_configs")) == pagerduty


def test_no_secret_is_written_in_the_config() -> None:
    text = CONFIG.read_text()
    for key in ("api_url", "slack_api_url", "routing_key", "service_key", "auth_password", "smtp_auth_password"):
        assert not re.search(rf"^\s*{key}:", text, re.M), f"{key} inline: use {key}_file"


def test_secret_files_are_mounted(services: dict) -> None:
    mounted = {f"/run/secrets/{s}" for s in services["alertmanager"].get("secrets") or []}
    cfg = load_yaml(CONFIG)
    referenced = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("_file") and isinstance(v, str):
                    referenced.add(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg)
    assert referenced and referenced <= mounted, referenced - mounted


def test_inhibit_rules_name_real_alerts() -> None:
    names = {r["alert"] for r in all_rules() if "alert" in r}
    for rule in load_yaml(CONFIG)["inhibit_rules"]:
        for m in rule["source_matchers"] + rule["target_matchers"]:
            key, _, value = m.partition("=")
            if key.strip() == "alertname":
                pattern = value.lstrip("~").strip('"')
                assert any(re.fullmatch(pattern, n) for n in names), m
                for part in pattern.split("|"):
                    assert part in names, f"inhibit rule names unknown alert {part}"
