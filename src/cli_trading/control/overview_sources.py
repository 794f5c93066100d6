"""What the overview gathers from outside the orchestrator's memory: the other agents' /health
and /status, and the tail of the agents' JSON log files.

Each function is a small read with a short timeout: the overview is polled every second by every
open console, so nothing here may wait long or read much."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx

from cli_trading.contracts import AGENTS

TAIL_BYTES = 48_000  # per log file and poll: enough for ~150 lines, cheap to read
ERROR_LEVELS = ("error", "critical", "exception")


async def probe_agent(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """One agent's health and status; `down` when it does not answer at all."""
    try:
        health, status = await asyncio.gather(client.get(url + "/health"), client.get(url + "/status"))
    except httpx.HTTPError as exc:
        return {"state": "down", "error": type(exc).__name__}
    out: dict[str, Any] = {"state": "healthy" if health.status_code == 200 else "unhealthy"}
    try:
        checks = health.json().get("checks") or {}
        out["failing"] = sorted(k for k, v in checks.items() if isinstance(v, dict) and not v.get("ok", True))
        st = status.json() if status.status_code == 200 else {}
    except ValueError:
        return out
    out["pid"] = st.get("pid")
    out["uptimeSeconds"] = st.get("uptimeSeconds")
    return out


def _tail_lines(path: Path, nbytes: int = TAIL_BYTES) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            chunk = fh.read()
    except OSError:
        return []
    lines = chunk.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > nbytes else lines  # the first line of a cut chunk is partial


def _entry(agent: str, line: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    known = {"ts", "level", "event", "agent", "logger"}
    extra = {k: v for k, v in doc.items() if k not in known}
    return {
        "ts": str(doc.get("ts", "")),
        "agent": str(doc.get("agent") or agent),
        "level": str(doc.get("level", "info")).lower(),
        "event": str(doc.get("event", ""))[:300],
        "extra": json.dumps(extra, default=str)[:300] if extra else "",
    }


def read_logs(logs_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The latest entries of each agent's log file, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for agent in AGENTS:
        entries = [e for line in _tail_lines(logs_dir / f"{agent}.log") if (e := _entry(agent, line))]
        out[agent] = entries
    return out


def merged_tail(logs: dict[str, list[dict[str, Any]]], *, limit: int, agent: str | None, level: str | None) -> list[
    dict[str, Any]
]:
    """The newest `limit` entries across agents (optionally of one agent / at one level or above)."""
    order = ["debug", "info", "warning", "error", "critical"]
    floor = order.index(level) if level in order else 0
    rows = [
        e
        for name, entries in logs.items()
        if agent in (None, name)
        for e in entries
        if (order.index(e["level"]) if e["level"] in order else 1) >= floor
    ]
    rows.sort(key=lambda e: e["ts"])
    return rows[-limit:] if limit else []


def last_error(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    for e in reversed(entries):
        if e["level"] in ERROR_LEVELS:
            return {"ts": e["ts"], "event": e["event"], "extra": e["extra"]}
    return None
