"""`cli-trading security-audit [--report] [--json]`: findings with a severity each.

Severities: critical, high, medium, low, info. Exit code: 2 when any finding is critical or high,
1 when the worst is medium or low, 0 otherwise. Checks: admin token strength and age, secret file
permissions, admin API / Redis / PostgreSQL exposure on non-loopback addresses, failed
authentications and admin actions over the last 24 h (audit_events), secret values found in log
files, default or example secrets in use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis
from sqlalchemy.engine import make_url

from cli_trading.auth import fingerprint, previous_path
from cli_trading.contracts import now_utc
from cli_trading.db import engine as dbengine
from cli_trading.db import repo
from cli_trading.ops import redisdurable
from cli_trading.ops import secrets as sec
from cli_trading.ops.locate import Located

SEVERITIES = ("critical", "high", "medium", "low", "info")
KNOWN_DEFAULTS = {"changeme", "change-me", "change_me", "admin", "password", "secret", "token", "test", "trader",
                  "postgres", "example", "default", "letmein", "123456", "admin-token", "your-token-here"}
TOKEN_MAX_AGE_DAYS = 90


@dataclass
class Finding:
    id: str
    severity: str
    title: str
    detail: str
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def exit_code(findings: list[Finding]) -> int:
    sevs = {f.severity for f in findings}
    return 2 if sevs & {"critical", "high"} else 1 if sevs & {"medium", "low"} else 0


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost: assume reachable


def audit(loc: Located) -> list[Finding]:
    out: list[Finding] = []
    for check in (token_findings, permission_findings, exposure_findings, redis_findings, postgres_findings,
                  log_findings, default_findings):
        out += check(loc)
    out += asyncio.run(audit_trail_findings(loc))
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))


# -- token ----------------------------------------------------------------------------------
def token_findings(loc: Located) -> list[Finding]:
    token = loc.token()
    if not token:
        return [Finding("token-missing", "medium", "No admin token configured",
                        "The admin API is disabled (every call gets 401): operators cannot halt through it.",
                        "`manage-secrets.sh init` and start with ADMIN_TOKEN_FILE=./secrets/admin_token")]
    out = []
    if len(token) < 24 or len(set(token)) < 10:
        out.append(Finding("token-weak", "high", "Admin token is weak",
                           f"{len(token)} characters, {len(set(token))} distinct: guessable.",
                           "`manage-secrets.sh rotate --force` (32 random bytes)", {"fingerprint": fingerprint(token)}))
    f = loc.token_file()
    if f is None or not f.exists():
        out.append(Finding("token-in-env", "low", "Admin token comes from the environment",
                           "A token in ADMIN_TOKEN cannot be rotated without restarting every agent.",
                           "Use ADMIN_TOKEN_FILE (rotation without restart)"))
    else:
        age = (time.time() - f.stat().st_mtime) / 86400
        if age > TOKEN_MAX_AGE_DAYS:
            out.append(Finding("token-old", "medium", "Admin token is old", f"Last rotated {age:.0f} days ago.",
                               "`manage-secrets.sh rotate`", {"file": str(f), "ageDays": round(age)}))
    return out


# -- files ----------------------------------------------------------------------------------
def _secret_files(loc: Located) -> list[Path]:
    files = [sec.secrets_dir() / s.name for s in sec.SPECS]
    tf = loc.token_file()
    if tf:
        files += [tf, previous_path(tf)]
    for key in ("DATABASE_PASSWORD_FILE", "EXCHANGE_API_KEY_FILE", "EXCHANGE_API_SECRET_FILE", "TLS_KEY_FILE"):
        if loc.pick(key):
            files.append(Path(loc.pick(key) or ""))
    return [p for p in dict.fromkeys(files) if p.exists()]


def permission_findings(loc: Located) -> list[Finding]:
    out = []
    for p in _secret_files(loc):
        mode = p.stat().st_mode & 0o777
        if mode & 0o077:
            out.append(Finding("secret-file-mode", "high", f"Secret file readable by others: {p}",
                               f"Mode {oct(mode)}; other users on this machine can read it.",
                               f"chmod 600 {p}", {"file": str(p), "mode": oct(mode)}))
    for d in {p.parent for p in _secret_files(loc)}:
        mode = d.stat().st_mode & 0o777
        if mode & 0o077:
            out.append(Finding("secret-dir-mode", "medium", f"Secrets folder open to others: {d}",
                               f"Mode {oct(mode)}.", f"chmod 700 {d}", {"dir": str(d), "mode": oct(mode)}))
    return out


# -- exposure -------------------------------------------------------------------------------
def exposure_findings(loc: Located) -> list[Finding]:
    host = loc.pick("BIND_HOST") or loc.settings.bind_host
    if is_loopback(host):
        return [Finding("admin-loopback", "info", "Admin API bound to loopback", f"BIND_HOST={host}")]
    tls = loc.pick("TLS_CERT_FILE")
    out = []
    if not tls:
        out.append(Finding("admin-no-tls", "high", "Admin API reachable without TLS on a non-loopback address",
                           f"BIND_HOST={host} and no TLS_CERT_FILE: X-Admin-Token travels in clear text.",
                           "Bind to 127.0.0.1 behind the TLS edge (nginx), or set TLS_CERT_FILE/TLS_KEY_FILE",
                           {"bindHost": host}))
    if not loc.pick("ADMIN_ALLOW_CIDRS"):
        out.append(Finding("admin-no-allowlist", "medium", "No admin allow-list on a non-loopback address",
                           "Any address can try tokens (only the lockout slows it down).",
                           "Set ADMIN_ALLOW_CIDRS to your operators' networks", {"bindHost": host}))
    return out


def redis_findings(loc: Located) -> list[Finding]:
    if not loc.redis_url:
        return []
    out = durability_findings(loc.redis_url)
    u = urlparse(loc.redis_url)
    if is_loopback(u.hostname) or u.password:
        return out
    return out + [Finding("redis-no-password", "high", "Redis without a password on a non-loopback address",
                    f"{u.hostname}:{u.port or 6379} accepts commands from anyone who can reach it "
                    "(halt flag, streams).", "requirepass / ACL users, and REDIS_URL=redis://:PASSWORD@host",
                    {"host": u.hostname})]


def durability_findings(url: str) -> list[Finding]:
    """A Redis that can lose acknowledged work on restart or under memory pressure (a warning)."""
    r = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=3)
    try:
        risks, evidence = redisdurable.inspect(r)
    except redis.RedisError:
        return []  # not reachable: the health check says so
    finally:
        r.close()
    return [Finding(k.id, "medium", k.title, f"At risk: {k.at_risk}.", k.fix, evidence) for k in risks]


def postgres_findings(loc: Located) -> list[Finding]:
    if not loc.is_postgres:
        return []
    u = make_url(loc.db_url)
    if is_loopback(u.host):
        return []
    rules = asyncio.run(_trust_rules(loc))
    if u.password and not rules:
        return []
    return [Finding("postgres-trust", "high", "PostgreSQL trusts connections on a non-loopback address",
                    f"{u.host}: " + ("pg_hba trust rules " + ", ".join(rules) if rules else
                                      "connected without a password"),
                    "Use scram-sha-256 in pg_hba.conf and DATABASE_PASSWORD_FILE", {"host": u.host, "rules": rules})]


async def _trust_rules(loc: Located) -> list[str]:

    try:
        async with dbengine.one_session(loc.db_url) as s:
            rules = await repo.pg_trust_rules(s)
    except Exception:  # noqa: BLE001 - pg_hba_file_rules needs superuser; absence is not a finding
        return []
    return [f"{kind} {address}" for kind, address in rules if not is_loopback(address)]


# -- logs -----------------------------------------------------------------------------------
def _known_secrets(loc: Located) -> dict[str, str]:
    """name → value of every secret we can read (values are only compared, never shown)."""
    vals: dict[str, str] = {}
    tok = loc.token()
    if tok:
        vals["admin token"] = tok
    for p in _secret_files(loc):
        try:
            v = p.read_text().strip()
        except OSError:
            continue
        if p.name.endswith(".previous"):
            vals["previous admin token"] = _previous_token(v)
        elif v and not p.name.endswith((".key", ".pem")):
            vals[p.name] = v
    if make_url(loc.db_url).password:
        vals["database password"] = str(make_url(loc.db_url).password)
    return {k: v for k, v in vals.items() if len(v) >= 8}


def _previous_token(raw: str) -> str:
    try:
        return str(json.loads(raw).get("token") or "")
    except (ValueError, AttributeError):
        return ""


def log_findings(loc: Located) -> list[Finding]:
    folder = loc.logs_dir
    secrets_ = _known_secrets(loc)
    if not folder.is_dir() or not secrets_:
        return []
    out = []
    needles = {name: v.encode() for name, v in secrets_.items()}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            data = f.read_bytes()
        except OSError:
            continue
        for name, needle in needles.items():
            if needle in data:
                line = data[: data.index(needle)].count(b"\n") + 1
                out.append(Finding("secret-in-log", "critical", f"The {name} appears in a log file",
                                   f"{f} line {line} contains the {name}'s value.",
                                   "Rotate it now (`manage-secrets.sh rotate --force`), then purge the file",
                                   {"file": str(f), "line": line, "fingerprint": fingerprint(needle.decode())}))
    return out


def default_findings(loc: Located) -> list[Finding]:
    out = []
    for name, value in {**_known_secrets(loc), "admin token": loc.token() or ""}.items():
        if value and (value.lower() in KNOWN_DEFAULTS or "example" in value.lower() or "changeme" in value.lower()):
            out.append(Finding("default-secret", "critical", f"Default or example value in use: {name}",
                               "A value from documentation or examples is public knowledge.",
                               "Generate a new one (`manage-secrets.sh init` / `rotate --force`)",
                               {"secret": name, "fingerprint": fingerprint(value)}))
    return out


# -- the audit trail ------------------------------------------------------------------------
async def audit_trail_findings(loc: Located) -> list[Finding]:
    try:
        rows = await recent_audit(loc, hours=24)
    except Exception as exc:  # noqa: BLE001
        return [Finding("audit-unreadable", "medium", "Audit trail not readable", str(exc)[:200],
                        "Check DATABASE_URL / DATA_DIR")]
    failed = [r for r in rows if r["action"].startswith("admin:") and r["result"] in ("401", "403", "429")]
    admin = [r for r in rows if r["action"].startswith(("ops:", "secrets:")) or
             (r["action"].startswith("admin:") and r["result"] == "ok")]
    by_source: dict[str, int] = {}
    for r in failed:
        by_source[r["source"] or "?"] = by_source.get(r["source"] or "?", 0) + 1
    sev = "high" if len(failed) >= 20 else "medium" if len(failed) >= 5 else "low" if failed else "info"
    actions: dict[str, int] = {}
    for r in admin:
        actions[r["action"]] = actions.get(r["action"], 0) + 1
    return [
        Finding("auth-failures-24h", sev, f"{len(failed)} failed admin authentications in 24 h",
                "By source: " + (", ".join(f"{k}: {n}" for k, n in by_source.items()) or "none"),
                "Block the sources, rotate the token" if failed else "", {"bySource": by_source}),
        Finding("admin-actions-24h", "info", f"{len(admin)} admin actions in 24 h",
                ", ".join(f"{k} ×{n}" for k, n in sorted(actions.items())) or "none", "", {"byAction": actions}),
    ]


async def recent_audit(loc: Located, *, hours: float, limit: int = 5000) -> list[dict[str, Any]]:
    if loc.sqlite_path is not None and not loc.sqlite_path.exists():
        raise FileNotFoundError(f"no database at {loc.sqlite_path}")
    async with dbengine.one_session(loc.db_url) as s:
        rows = await repo.audit_tail(s, limit=limit, since=now_utc() - timedelta(hours=hours))
    return [{"id": e.id, "ts": e.ts.isoformat(), "agent": e.agent, "action": e.action, "actor": e.actor,
             "source": e.source, "target": e.target, "result": e.result, "requestId": e.request_id,
             "detail": e.detail} for e in rows]


def to_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
