"""The pure parts of the ops commands: grading, checksums, severities, exposure rules."""

from __future__ import annotations

import json
from pathlib import Path

from cli_trading.ops import backup as bk
from cli_trading.ops.checks import Thresholds, exit_code, grade, worst
from cli_trading.ops.health import halt_check, pnl_check
from cli_trading.ops.security import Finding, is_loopback
from cli_trading.ops.security import exit_code as audit_exit


def test_grading_and_exit_codes() -> None:
    assert grade(0.5, 0.75, 0.9) == "ok" and grade(0.8, 0.75, 0.9) == "warning" and grade(0.95, 0.75, 0.9) == "critical"
    assert worst(["ok", "warning"]) == "warning" and worst([]) == "ok" and worst(["critical", "ok"]) == "critical"
    assert [exit_code(s) for s in ("ok", "warning", "critical")] == [0, 1, 2]


def test_thresholds_from_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HEALTH_DLQ_CRIT", "7")
    monkeypatch.setenv("HEALTH_DISK_FREE_WARN", "0.3")
    th = Thresholds.from_env()
    assert th.dlq_crit == 7 and th.disk_free_warn == 0.3


def test_pnl_and_halt_grading() -> None:
    th = Thresholds()
    base = {"dailyTargetPct": "5", "dailyLossLimitPct": "3"}
    assert pnl_check({**base, "percent": "1"}, th).status == "ok"
    assert pnl_check({**base, "percent": "-2.5"}, th).status == "warning"
    assert pnl_check({**base, "percent": "-3"}, th).status == "critical"
    assert pnl_check(None, th).status == "critical"
    assert halt_check(None, {"halted": True, "haltReason": "daily_target_reached"}).status == "warning"  # type: ignore[arg-type]
    assert halt_check(None, {"halted": True, "haltReason": "manual"}).status == "critical"  # type: ignore[arg-type]
    assert halt_check(None, {"halted": False}).status == "ok"  # type: ignore[arg-type]


def test_checksums_catch_every_change(tmp_path: Path) -> None:
    (tmp_path / "database.sqlite").write_bytes(b"x" * 100)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"database.sqlite": {}}}))
    bk.write_sums(tmp_path)
    assert bk.check_sums(tmp_path) == []
    (tmp_path / "database.sqlite").write_bytes(b"x" * 99 + b"y")
    assert "database.sqlite does not match" in bk.check_sums(tmp_path)[0]
    (tmp_path / "database.sqlite").unlink()
    assert "database.sqlite is missing" in bk.check_sums(tmp_path)[0]
    (tmp_path / "SHA256SUMS").unlink()
    assert bk.check_sums(tmp_path) == ["SHA256SUMS is missing"]


def test_audit_exit_code_and_loopback() -> None:
    f = lambda sev: Finding("x", sev, "t", "d")  # noqa: E731
    assert audit_exit([f("info")]) == 0 and audit_exit([f("low"), f("info")]) == 1
    assert audit_exit([f("medium")]) == 1 and audit_exit([f("high")]) == 2 and audit_exit([f("critical")]) == 2
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback(None)
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("redis")


def _located(monkeypatch, tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    from cli_trading.ops.locate import locate

    for k in ("REDIS_URL", "DATABASE_URL", "ADMIN_TOKEN", "ADMIN_TOKEN_FILE", "BIND_HOST", "TLS_CERT_FILE",
              "ADMIN_ALLOW_CIDRS", "PORT_BASE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "secrets"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return locate(probe=False)


def test_exposure_findings(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cli_trading.ops import security as sa

    loc = _located(monkeypatch, tmp_path, BIND_HOST="0.0.0.0", REDIS_URL="redis://10.1.2.3:6379/0")
    ids = {f.id: f.severity for f in sa.exposure_findings(loc) + sa.redis_findings(loc)}
    assert ids == {"admin-no-tls": "high", "admin-no-allowlist": "medium", "redis-no-password": "high"}
    loc = _located(monkeypatch, tmp_path, BIND_HOST="127.0.0.1", REDIS_URL="redis://:pw@10.1.2.3:6379/0")
    assert [f.id for f in sa.exposure_findings(loc) + sa.redis_findings(loc)] == ["admin-loopback"]


def test_token_permission_and_default_findings(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cli_trading.ops import security as sa

    tf = tmp_path / "tok"
    tf.write_text("changeme\n")
    tf.chmod(0o644)
    loc = _located(monkeypatch, tmp_path, ADMIN_TOKEN_FILE=str(tf))
    found = {f.id: f.severity for f in sa.token_findings(loc) + sa.permission_findings(loc)
             + sa.default_findings(loc)}
    assert found["token-weak"] == "high" and found["secret-file-mode"] == "high"
    assert found["default-secret"] == "critical"
    assert "changeme" not in json.dumps(sa.to_json(sa.default_findings(loc)))


def test_secrets_init_rotate_offline(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cli_trading.auth import TokenStore
    from cli_trading.ops import secrets as sec

    loc = _located(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    sec.init(tmp_path / "secrets")
    tf = tmp_path / "secrets" / "admin_token"
    old = tf.read_text().strip()
    store = TokenStore(token_file=str(tf))
    assert store.check(old)
    res = sec.rotate(loc, force=False, grace_s=60)
    new = tf.read_text().strip()
    assert store.check(new) and store.check(old) and not res["notified"]
    assert not res["audited"] and (loc.logs_dir / "secrets-audit.log").exists()  # no database: local record
    sec.rotate(loc, force=True)
    assert not store.check(old) and not store.check(new) and store.check(tf.read_text().strip())
