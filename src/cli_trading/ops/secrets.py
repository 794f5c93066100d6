"""`cli-trading secrets init | rotate [--force] | status`.

Secrets live one per file in SECRETS_DIR (default ./secrets; folder 0700, files 0600) and reach the
agents through *_FILE settings (ADMIN_TOKEN_FILE, DATABASE_PASSWORD_FILE, …).

Admin token rotation follows the protocol of `cli_trading.auth`: the agents re-read the token file
when its mtime changes and accept the token in `<file>.previous` ({"token", "validUntil"}) until
validUntil. A graceful rotation writes `.previous` first (the old token never stops working
early), then the new token; `--force` deletes `.previous` so the old token gets 401 at once.
Every rotation is audited (audit_events, token fingerprints only) and notified (notify.events).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cli_trading.auth import fingerprint, previous_path
from cli_trading.busops import encode
from cli_trading.contracts import NotifyEvent, Stream, iso, now_utc
from cli_trading.db import engine as dbengine
from cli_trading.db import repo
from cli_trading.files import write_atomic
from cli_trading.ops import redisdump
from cli_trading.ops.locate import Located


@dataclass(frozen=True)
class SecretSpec:
    name: str
    generate: bool
    used_by: str
    rotation: str


SPECS = (
    SecretSpec("admin_token", True, "ADMIN_TOKEN_FILE: admin API of every agent (X-Admin-Token)",
               "`secrets rotate` (graceful, or --force), no restart"),
    SecretSpec("postgres_password", True, "DATABASE_PASSWORD_FILE: every agent; POSTGRES_PASSWORD_FILE: postgres",
               "manual: ALTER USER trader PASSWORD …, then restart the agents"),
    SecretSpec("slack_webhook_url", False, "notification-manager (Slack channels)", "replace the file, restart"),
    SecretSpec("pagerduty_key", False, "notification-manager (PagerDuty, P0)", "replace the file, restart"),
    SecretSpec("smtp_url", False, "notification-manager (email)", "replace the file, restart"),
    SecretSpec("exchange_api_key", False, "EXCHANGE_API_KEY_FILE: trade-executor (live mode)",
               "new key at the exchange, replace the file, restart trade-executor"),
    SecretSpec("exchange_api_secret", False, "EXCHANGE_API_SECRET_FILE: trade-executor (live mode)",
               "with exchange_api_key"),
)


def secrets_dir() -> Path:
    return Path(os.environ.get("SECRETS_DIR") or "secrets")


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (value + ("\n" if value else "")).encode(), mode=0o600)


def init(folder: Path) -> list[dict[str, str]]:
    """Create missing secrets; existing files are never overwritten."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    out = []
    for spec in SPECS:
        p = folder / spec.name
        if p.exists():
            out.append({"secret": spec.name, "action": "kept (exists)"})
            continue
        _write_secret(p, secrets.token_urlsafe(32 if spec.name == "admin_token" else 24) if spec.generate else "")
        out.append({"secret": spec.name, "action": "generated" if spec.generate else "placeholder (empty)"})
    return out


# -- rotation -------------------------------------------------------------------------------
def token_file_for(loc: Located) -> Path:
    """The file the agents read: ADMIN_TOKEN_FILE, else SECRETS_DIR's, else the running system's,
    else ./secrets/admin_token."""
    if os.environ.get("ADMIN_TOKEN_FILE"):
        return Path(os.environ["ADMIN_TOKEN_FILE"])
    if os.environ.get("SECRETS_DIR"):
        return secrets_dir() / "admin_token"
    running = loc.pick("ADMIN_TOKEN_FILE")
    return Path(running) if running else secrets_dir() / "admin_token"


def rotate(loc: Located, *, force: bool, grace_s: float | None = None) -> dict[str, Any]:
    path = token_file_for(loc)
    old = path.read_text().strip() if path.exists() else ""
    new = secrets.token_urlsafe(32)
    grace = loc.settings.admin_token_grace_s if grace_s is None else grace_s
    prev = previous_path(path)
    until = None
    if force:
        _write_secret(path, new)
        prev.unlink(missing_ok=True)
    else:
        if old:
            until = iso(now_utc() + timedelta(seconds=grace))
            _write_secret(prev, json.dumps({"token": old, "validUntil": until}))
        _write_secret(path, new)
    result: dict[str, Any] = {
        "tokenFile": str(path.resolve()),
        "mode": "forced" if force else "graceful",
        "newFingerprint": fingerprint(new),
        "oldFingerprint": fingerprint(old) if old else None,
        "previousValidUntil": until,
        "warnings": _env_token_warning(loc),
    }
    result["audited"] = _audit(loc, result)
    result["notified"] = _notify(loc, result)
    return result


def _env_token_warning(loc: Located) -> list[str]:
    if loc.process_env.get("ADMIN_TOKEN") and not loc.process_env.get("ADMIN_TOKEN_FILE"):
        return ["the running agents take ADMIN_TOKEN from their environment, not a file: they keep accepting "
                "the old token until restarted with ADMIN_TOKEN_FILE"]
    return []


def _event(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": now_utc(), "agent": "ops", "action": "secrets:rotate", "actor": f"ops:{getpass.getuser()}",
        "source": socket.gethostname(), "target": "admin_token", "result": result["mode"], "request_id": None,
        "detail": {k: result[k] for k in ("newFingerprint", "oldFingerprint", "previousValidUntil", "tokenFile")},
    }


def _audit(loc: Located, result: dict[str, Any]) -> bool:
    async def go() -> None:
        async with dbengine.one_session(loc.db_url) as s, s.begin():
            await repo.add_audit(s, rows=[_event(result)])

    try:
        asyncio.run(go())
        return True
    except Exception:  # noqa: BLE001 - fall back to a local audit file, never lose the record
        log = loc.logs_dir / "secrets-audit.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(json.dumps(_event(result), default=str) + "\n")
        return False


def _notify(loc: Located, result: dict[str, Any]) -> bool:
    if not loc.redis_url:
        return False
    revoked = "previous token revoked at once" if result["mode"] == "forced" else \
        f"previous token valid until {result['previousValidUntil']}"
    event = NotifyEvent(
        type="security.secret_rotated", severity="warning",
        message=f"Admin token rotated ({result['mode']}): {revoked}",
        context={"secret": "admin_token", "category": "security", "actor": f"ops:{getpass.getuser()}",
                 **{k: result[k] for k in ("mode", "newFingerprint", "oldFingerprint", "previousValidUntil")}},
    )
    try:
        redisdump.client(loc.redis_url).xadd(Stream.NOTIFY, {"data": encode(event)})
        return True
    except Exception:  # noqa: BLE001 - the audit record stands; say it was not notified
        return False


# -- status ---------------------------------------------------------------------------------
def status(loc: Located) -> list[dict[str, Any]]:
    folder = secrets_dir()
    token_file = token_file_for(loc)
    rows = [_describe(folder / s.name, s) for s in SPECS]
    if token_file.resolve() != (folder / "admin_token").resolve():
        rows.insert(0, _describe(token_file, SPECS[0], label="admin_token (in use)"))
    prev = previous_path(token_file)
    if prev.exists():
        rows.insert(1, _previous_row(prev))
    return rows


def in_use(loc: Located) -> str:
    """Where the running agents take the admin token from (fingerprint only)."""
    env = loc.process_env
    if env.get("ADMIN_TOKEN_FILE"):
        return f"file {env['ADMIN_TOKEN_FILE']}"
    if env.get("ADMIN_TOKEN"):
        return f"ADMIN_TOKEN environment variable ({fingerprint(env['ADMIN_TOKEN'])}); rotation needs a restart"
    f = loc.pick("ADMIN_TOKEN_FILE")
    return f"file {f}" if f else "unknown (no local running system found)"


def _describe(p: Path, spec: SecretSpec, label: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"secret": label or spec.name, "file": str(p), "usedBy": spec.used_by,
                           "rotation": spec.rotation}
    if not p.exists():
        return {**row, "state": "missing", "ageDays": None, "mode": None}
    st = p.stat()
    value = p.read_text().strip()
    mode = oct(st.st_mode & 0o777)
    state = "set" if value else "placeholder (empty)"
    if st.st_mode & 0o077:
        state += ", PERMISSIONS TOO OPEN"
    row.update(state=state, mode=mode, ageDays=round((time.time() - st.st_mtime) / 86400, 2))
    if spec.name == "admin_token" and value:
        row["fingerprint"] = fingerprint(value)
    return row


def _previous_row(prev: Path) -> dict[str, Any]:
    try:
        until = json.loads(prev.read_text()).get("validUntil")
    except (OSError, ValueError):
        until = "unreadable"
    return {"secret": "admin_token.previous", "file": str(prev), "state": f"grace until {until}",
            "mode": oct(prev.stat().st_mode & 0o777), "ageDays": round((time.time() - prev.stat().st_mtime) / 86400, 2),
            "usedBy": "previous admin token during its grace period", "rotation": "expires; --force removes it"}
