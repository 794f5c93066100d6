"""The security audit as Markdown, and the evidence folder `--report` writes for the runbook's
"preserve evidence" step:

    <INCIDENT_DIR or <data>/incidents>/security-audit-<YYYYmmddTHHMMSSZ>/
        report.md  report.json       the findings
        audit-trail.json             audit_events of the last 24 h
        system-state.json            the health check document, halt/PnL, streams, processes
        logs-manifest.json           every log file with size, mtime and SHA-256 (copy them next)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_trading.contracts import iso
from cli_trading.ops import health
from cli_trading.ops.backup import sha256
from cli_trading.ops.locate import Located
from cli_trading.ops.security import Finding, exit_code, recent_audit, to_json

ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}


def markdown(findings: list[Finding], loc: Located) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in ICON}
    lines = [
        "# Security audit — cli-trading",
        "",
        f"- Time: {iso()}",
        f"- Host: {socket.gethostname()}",
        f"- Data folder: {loc.data_dir.resolve()}",
        "- Findings: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        f"- Exit code: {exit_code(findings)}",
        "",
        "| severity | finding | detail | fix |",
        "|---|---|---|---|",
    ]
    for f in findings:
        lines.append(f"| {ICON[f.severity]} {f.severity} | {_cell(f.title)} | {_cell(f.detail)} | {_cell(f.fix)} |")
    return "\n".join(lines) + "\n"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def incident_root(loc: Located) -> Path:
    return Path(os.environ.get("INCIDENT_DIR") or loc.data_dir / "incidents")


def write_report(loc: Located, findings: list[Finding]) -> Path:
    folder = incident_root(loc) / f"security-audit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(folder / "report.md", markdown(findings, loc))
    _write(folder / "report.json", json.dumps({"findings": to_json(findings), "exitCode": exit_code(findings)},
                                              indent=2))
    _write(folder / "audit-trail.json", json.dumps(_audit_trail(loc), indent=2, default=str))
    _write(folder / "system-state.json", json.dumps(system_state(loc), indent=2, default=str))
    _write(folder / "logs-manifest.json", json.dumps(_logs_manifest(loc), indent=2))
    return folder


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def _audit_trail(loc: Located) -> dict[str, Any]:
    try:
        return {"hours": 24, "events": asyncio.run(recent_audit(loc, hours=24))}
    except Exception as exc:  # noqa: BLE001 - evidence gathering must not stop here
        return {"hours": 24, "error": str(exc)[:300], "events": []}


def system_state(loc: Located) -> dict[str, Any]:
    return {
        "capturedAt": iso(),
        "host": socket.gethostname(),
        "health": health.run_checks(loc),
        "processes": _run(["ps", "-eo", "pid,ppid,user,etime,args", "--sort=-pid"]),
        "listening": _run(["ss", "-tulpn"]) or _run(["netstat", "-tulpn"]),
    }


def _run(args: list[str]) -> str | None:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603 - our argv
        return proc.stdout[-200_000:]
    except (OSError, subprocess.SubprocessError):
        return None


def _logs_manifest(loc: Located) -> list[dict[str, Any]]:
    folder = loc.logs_dir
    if not folder.is_dir():
        return []
    return [{"file": str(p), "bytes": p.stat().st_size, "mtime": datetime.fromtimestamp(p.stat().st_mtime, UTC)
             .isoformat(), "sha256": sha256(p)} for p in sorted(folder.rglob("*")) if p.is_file()]
