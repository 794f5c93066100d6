"""Gathers the facts the recovery checklist is judged on, from inside the system: every agent's
/health, /status and /metrics, the orchestrator's PnL and admin guard, the database, the streams
in Redis, open incidents, and the newest backup folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cli_trading.config import Settings, redact_url
from cli_trading.contracts import AGENTS
from cli_trading.control.streams import overview
from cli_trading.db import engine as dbengine
from cli_trading.notify.recovery import Facts

SKIP_ROUTES = {"/metrics", "/health"}


def base_url(settings: Settings, agent: str) -> str:
    host = "127.0.0.1" if settings.bind_host in ("0.0.0.0", "::", "") else settings.bind_host  # noqa: S104 - a comparison, binds nothing
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{host}:{settings.port_of(agent)}"


async def _get(client: httpx.AsyncClient, url: str) -> tuple[int, Any, float]:
    start = time.perf_counter()
    try:
        r = await client.get(url)
    except httpx.HTTPError:
        return 0, None, time.perf_counter() - start
    try:
        body: Any = r.json()
    except ValueError:
        body = r.text
    return r.status_code, body, time.perf_counter() - start


def p95_from_histogram(text: str) -> float | None:
    """p95 of http_request_duration_seconds over every route but /metrics and /health: the
    smallest bucket bound holding 95% of the requests."""
    buckets: dict[float, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != "http_request_duration_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_bucket") and s.labels.get("route") not in SKIP_ROUTES:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    return next((le for le in sorted(buckets) if buckets[le] >= 0.95 * total), None)


def counter_ratio(text: str, family: str, label: str, bad: tuple[str, ...]) -> tuple[float, float]:
    total = failed = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name != family:
            continue
        for s in fam.samples:
            if s.name.endswith("_total"):
                total += s.value
                failed += s.value if any(s.labels.get(label, "").startswith(b) for b in bad) else 0
    return failed, total


def newest_backup(root: Path, now: datetime) -> dict[str, Any] | None:
    folders = (
        sorted((p for p in root.glob("*") if (p / "manifest.json").exists()), reverse=True) if root.is_dir() else []
    )
    if not folders:
        return None
    latest = folders[0]
    age_h = (now.timestamp() - (latest / "manifest.json").stat().st_mtime) / 3600
    return {"id": latest.name, "ageHours": age_h, "checksums": verify_sums(latest)}


def verify_sums(folder: Path) -> str:
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        return "missing"
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        f = folder / name.strip().lstrip("*")
        if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest.strip():
            return f"mismatch on {name.strip()}"
    return "ok"


async def gather(
    *,
    settings: Settings,
    engine: Any,
    redis: Any,
    open_incidents: list[dict[str, Any]],
    token_configured: bool,
    documented: bool,
    now: datetime,
) -> Facts:
    f = Facts(open_incidents=open_incidents, token_configured=token_configured, documented=documented)
    async with httpx.AsyncClient(timeout=8, verify=False) as client:  # noqa: S501 - our own loopback agents
        urls = {a: base_url(settings, a) for a in AGENTS}
        health, status, metrics = await asyncio.gather(
            asyncio.gather(*(_get(client, urls[a] + "/health") for a in AGENTS)),
            asyncio.gather(*(_get(client, urls[a] + "/status") for a in AGENTS)),
            asyncio.gather(*(_get(client, urls[a] + "/metrics") for a in AGENTS)),
        )
        code, pnl, _ = await _get(client, urls["orchestrator"] + "/pnl/status")
        f.pnl = pnl if code == 200 and isinstance(pnl, dict) else None
        f.admin_unauthenticated, _, _ = await _get(client, urls["orchestrator"] + "/admin/streams")
    for a, (c, body, secs), (sc, _, _), (mc, text, _) in zip(AGENTS, health, status, metrics, strict=True):
        f.health[a] = {"code": c, "body": body if isinstance(body, dict) else None, "seconds": secs}
        f.status[a] = sc
        if mc == 200 and isinstance(text, str):
            f.latency_p95_s[a] = p95_from_histogram(text)
            bad, total = counter_ratio(text, "http_requests", "status", ("5",))
            if a == "orchestrator" or total:
                f.error_rates[f"{a} http 5xx"] = bad / total if total else 0.0
            if a == "orchestrator":
                failed, orders = counter_ratio(text, "trading_orders", "status", ("failed",))
                f.error_rates["orders failed"] = failed / orders if orders else 0.0
                f.auth_failures = counter_ratio(text, "admin_auth_failures", "", ())[1]
    f.database = redact_url(settings.db_url)
    f.database_ok = await dbengine.check(engine) if engine is not None else False
    try:
        f.streams = await overview(redis)
    except Exception as exc:  # noqa: BLE001 - Redis down is a failed item, not a crash
        f.streams_error = type(exc).__name__
    root = Path(os.environ.get("BACKUP_DIR") or settings.data_dir / "backups")
    f.backup_root = str(root)
    f.backup = newest_backup(root, now)
    return f
