"""Unit tests of the pure core against the shipped policy: the runbook's classification table,
routing matrix, templates, escalation timing, post-mortem and checklist verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli_trading.config import ConfigError, load_settings
from cli_trading.notify import config, escalation, postmortem, recovery, templates
from cli_trading.notify.channels import redact
from cli_trading.notify.classify import classify

CFG = config.load(load_settings(notify_config=None))
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def ev(type_: str, severity: str = "critical", **context: object) -> dict[str, object]:
    return {"type": type_, "severity": severity, "message": f"msg {type_}", "context": context}


@pytest.mark.parametrize(
    ("event", "priority", "category", "incident"),
    [
        (ev("halt.security_incident", reason="security_incident"), "P0", "security", True),
        (ev("halt.daily_loss_limit", reason="daily_loss_limit"), "P0", "trading", True),
        (ev("halt.emergency_stop", reason="emergency_stop"), "P0", "trading", True),
        (ev("halt.system_error", reason="system_error"), "P0", "trading", True),
        (ev("halt.manual", "warning", reason="manual", actor="alice"), "P1", "trading", True),
        (ev("halt.maintenance", "warning", reason="maintenance"), "P1", "trading", True),
        (ev("halt.daily_target_reached", "info", reason="daily_target_reached"), "P3", "trading", False),
        (ev("unhalt.unhalt", "info", previousReason="manual"), "P3", "trading", False),
        (ev("security.auth_failures", category="security"), "P0", "security", True),
        (ev("security.secret_rotated", "warning", category="security"), "P3", "security", False),
        (ev("agent.down", agent="risk-manager"), "P1", "infrastructure", True),
        (ev("agent.recovered", "info", agent="risk-manager"), "P3", "infrastructure", False),
        (ev("metrics.error_rate", "warning", value=0.12), "P1", "infrastructure", True),
        (ev("metrics.error_rate", "warning", value=0.05), "P3", "infrastructure", False),
        (ev("metrics.latency", "warning", seconds=7.5), "P2", "infrastructure", False),
        (ev("metrics.latency", "warning", seconds=1.2), "P3", "infrastructure", False),
        (ev("database.down"), "P1", "infrastructure", True),
        (ev("system.outage"), "P0", "infrastructure", True),
        (ev("optimizer.proposals", "info"), "P3", "trading", False),
        (ev("something.new", "warning"), "P2", "infrastructure", False),
    ],
)
def test_classification_table(event: dict[str, object], priority: str, category: str, incident: bool) -> None:
    c = classify(event, CFG.rules)
    assert (c.priority, c.category, c.opens_incident) == (priority, category, incident)


def test_manual_halt_is_acknowledged_by_the_operator_and_unhalt_mitigates_it() -> None:
    halt = classify(ev("halt.manual", "warning", reason="manual", actor="alice"), CFG.rules)
    assert halt.ack_by == "alice" and halt.cause == "halt:manual"
    unhalt = classify(ev("unhalt.unhalt", "info", previousReason="manual"), CFG.rules)
    assert unhalt.mitigates == "halt:manual"
    assert classify(ev("agent.down", agent="x"), CFG.rules).cause == "agent_down:x"


@pytest.mark.parametrize(
    ("priority", "category", "channels"),
    [
        ("P0", "trading", ["trading-critical", "pagerduty", "mail-oncall"]),
        ("P1", "trading", ["trading-critical"]),
        ("P2", "trading", ["trading-alerts"]),
        ("P3", "trading", ["trading-alerts"]),
        ("P0", "security", ["trading-critical", "pagerduty", "mail-oncall", "security-immediate", "mail-security"]),
        ("P1", "infrastructure", ["trading-critical", "ops-team"]),
        ("P3", "security", ["trading-alerts", "security-immediate", "mail-security"]),
    ],
)
def test_routing_matrix(priority: str, category: str, channels: list[str]) -> None:
    assert CFG.route(priority, category) == channels
    labels = {CFG.channels[c].label for c in CFG.route("P0", "security")}
    assert {"#trading-critical", "#security-immediate", "security@company.com", "PagerDuty"} <= labels


def test_policy_file_typos_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "n.yaml"
    bad.write_text(config.config_path(load_settings()).read_text().replace("throttle_seconds", "throttle_secs"))
    with pytest.raises(ConfigError, match="throttle_secs"):
        config.load(load_settings(notify_config=str(bad)))
    bad.write_text(config.config_path(load_settings()).read_text().replace("[pagerduty, mail-oncall]", "[pager]"))
    with pytest.raises(ConfigError, match="unknown channel"):
        config.load(load_settings(notify_config=str(bad)))


def test_unconfigured_channel_and_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ch = config.Channel(label="#x", env="CT_TEST_NOTIFY_URL")
    monkeypatch.delenv("CT_TEST_NOTIFY_URL", raising=False)
    assert ch.resolve() is None
    secret = tmp_path / "url"
    secret.write_text("json://127.0.0.1:1/hook\n")
    monkeypatch.setenv("CT_TEST_NOTIFY_URL_FILE", str(secret))
    assert ch.resolve() == "json://127.0.0.1:1/hook"


def test_templates_have_the_runbook_fields() -> None:
    a = templates.alert(
        service="CLI-Trading",
        priority="P0",
        issue="Trading halted",
        impact="High",
        status="INVESTIGATING",
        eta=templates.next_update(T0, 30),
        contact="On-call Engineer",
        incident_id=7,
    )
    for line in (
        "🚨 INCIDENT ALERT 🚨",
        "Severity: P0",
        "Service: CLI-Trading",
        "Issue: Trading halted",
        "Impact: High",
        "Status: INVESTIGATING",
        "ETA: next update by 2026-01-05 12:30 UTC",
        "Contact: On-call Engineer",
    ):
        assert line in a.body.splitlines()
    u = templates.update(
        priority="P0", incident_id=7, title="T", status="MITIGATING", progress="p", next_steps="n", eta="e"
    )
    assert u.body.splitlines() == [
        "📊 INCIDENT UPDATE 📊",
        "Incident: #7 T",
        "Status: MITIGATING",
        "Progress: p",
        "Next Steps: n",
        "ETA: e",
    ]
    r = templates.resolved(
        priority="P0",
        incident_id=7,
        title="T",
        start=T0,
        end=T0 + timedelta(minutes=42),
        root_cause="rc",
        resolution="fix",
        postmortem_due=T0 + timedelta(hours=48),
    )
    lines = r.body.splitlines()
    assert lines[0] == "✅ INCIDENT RESOLVED ✅"
    assert "Duration: 2026-01-05 12:00 UTC - 2026-01-05 12:42 UTC (42m 00s)" in lines
    assert "Root Cause: rc" in lines and "Resolution: fix" in lines
    assert any(x.startswith("Post-mortem: ") for x in lines)


def test_escalation_follows_response_times() -> None:
    def due(minutes: float, level: int = 0, ack: bool = False, prio: str = "P0") -> list[int]:
        return escalation.levels_due(
            opened_at=T0,
            acknowledged=ack,
            level=level,
            now=T0 + timedelta(minutes=minutes),
            response_minutes=CFG.response_minutes[prio],
            chain_length=len(CFG.escalation[prio]),
        )

    assert due(4.9) == [] and due(5) == [1] and due(10) == [1, 2] and due(10, level=1) == [2]
    assert due(500, level=2) == [] and due(30, ack=True) == []
    assert due(14, prio="P1") == [] and due(15, prio="P1") == [1]
    assert due(59, prio="P2") == [] and due(60, prio="P2") == [1] and due(999, prio="P3") == []
    assert escalation.reminder_due(last_activity=T0, now=T0 + timedelta(minutes=30), interval_minutes=30)
    assert not escalation.reminder_due(last_activity=T0, now=T0 + timedelta(minutes=29), interval_minutes=30)


def test_redaction_removes_every_part_of_a_secret_url() -> None:
    url = "pagerduty://integrationKEY123@apiKEY456/?region=eu"
    text = redact("A Connection error occurred sending Pager Duty notification to apiKEY456 (integrationKEY123)", url)
    assert "KEY" not in text
    assert redact("see https://hooks.slack.com/services/T0/B0/secret", None) == "see https://***"


def _incident() -> dict[str, object]:
    iso = lambda m: (T0 + timedelta(minutes=m)).isoformat()  # noqa: E731
    return {
        "id": 3,
        "title": "Trading halted: emergency_stop",
        "severity": "P0",
        "category": "trading",
        "status": "RESOLVED",
        "cause": "halt:emergency_stop",
        "commander": "alice",
        "impact": "High",
        "services": ["orchestrator", "trading"],
        "openedAt": iso(1),
        "startedAt": iso(0),
        "detectedAt": iso(1),
        "acknowledgedAt": iso(3),
        "mitigatedAt": iso(10),
        "resolvedAt": iso(20),
        "rootCause": "bad feed",
        "resolution": "unhalted",
        "timeToDetectSeconds": 60,
        "timeToRespondSeconds": 120,
        "timeToMitigateSeconds": 600,
        "timeToResolveSeconds": 1200,
        "timeline": [
            {"ts": iso(0), "kind": "halt", "message": "Trading halted", "actor": "tok:1"},
            {"ts": iso(3), "kind": "ack", "message": "acknowledged", "actor": "alice"},
            {"ts": iso(10), "kind": "unhalt", "message": "resumed", "actor": "alice"},
            {"ts": iso(20), "kind": "resolution", "message": "unhalted", "actor": "alice"},
        ],
    }


def test_postmortem_follows_the_template_with_records_filled_in() -> None:
    md = postmortem.generate(_incident(), now=T0 + timedelta(hours=1), deliveries=[{"channel": "x", "status": "sent"}])
    order = ["Incident Summary", "Timeline", "Root Cause Analysis", "Action Items", "Lessons Learned"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    for text in (
        "**Duration:** 20m 00s",
        "**Services affected:** orchestrator, trading",
        "**Business impact:** High",
        "time to detect 1m 00s",
        "time to respond 2m 00s",
        "time to mitigate 10m 00s",
        "time to resolve 20m 00s",
        "| 12:00:00 | halt | tok:1 |",
        "| 12:10:00 | unhalt | alice |",
        "**Primary cause:** bad feed",
        "within the P0 response time",
    ):
        assert text in md, text


def test_checklist_verdicts() -> None:
    good = recovery.Facts(
        health={a: {"code": 200, "body": {"checks": {}}, "seconds": 0.01} for a in recovery.AGENTS},
        status={a: 200 for a in recovery.AGENTS},
        pnl={"halted": False, "percent": "0.1"},
        database_ok=True,
        streams=[
            {
                "stream": "s",
                "dlq": "s.dlq",
                "dlqLength": 0,
                "groups": [{"name": "g", "pending": 0}],
                "expectedGroups": ["g"],
            }
        ],
        latency_p95_s={"orchestrator": 0.05},
        error_rates={"orders failed": 0.0},
        admin_unauthenticated=401,
        token_configured=True,
        backup={"id": "b", "ageHours": 1.0, "checksums": "ok"},
        documented=True,
    )
    result = recovery.evaluate(good)
    assert result["ok"] and result["passed"] == result["total"] == 10
    good.pnl = {"halted": True, "haltReason": "emergency_stop"}
    good.open_incidents = [{"id": 1, "severity": "P0", "title": "x", "status": "MITIGATING", "category": "trading"}]
    good.streams[0]["dlqLength"] = 2
    items = {i["key"]: i for i in recovery.evaluate(good)["items"]}
    assert not items["trading"]["ok"] and "emergency_stop" in items["trading"]["evidence"]
    assert not items["alerts"]["ok"] and "#1" in items["alerts"]["evidence"]
    assert not items["streams"]["ok"] and "DLQ s.dlq: 2" in items["streams"]["evidence"]
    assert items["documentation"]["check"] == "manual"


def _am(name: str, severity: str, status: str = "firing", **labels: str) -> dict[str, object]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} summary", "description": "why"},
        "startsAt": "2026-01-05T12:00:00Z",
        "fingerprint": f"fp{name}",
    }


def test_prometheus_alerts_keep_their_labels() -> None:
    from cli_trading.notify.alertmanager import events

    payload = {
        "alerts": [
            _am("HighErrorRate", "P1", category="infrastructure"),
            _am("HighLatency", "P2", category="infrastructure"),
            _am("TradingSystemHalted", "P0", category="trading"),
            _am("HighErrorRate", "P1", "resolved", category="infrastructure"),
        ]
    }
    firing, latency, halted, resolved = [e.model_dump() for e in events(payload)]
    c = classify(firing, CFG.rules)
    assert (c.priority, c.category, c.opens_incident, c.cause) == ("P1", "infrastructure", True, "alert:HighErrorRate")
    assert c.title == "HighErrorRate summary" and firing["severity"] == "critical"
    assert classify(latency, CFG.rules).priority == "P2" and not classify(latency, CFG.rules).opens_incident
    h = classify(halted, CFG.rules)
    assert h.priority == "P0" and not h.opens_incident  # the orchestrator's own halt event opens it
    r = classify(resolved, CFG.rules)
    assert r.mitigates == "alert:HighErrorRate" and resolved["type"] == "alert.HighErrorRate.resolved"
    assert len({e.traceId for e in events(payload)}) == 4
    assert events(payload)[0].traceId == events(payload)[0].traceId  # Alertmanager's repeats dedupe
