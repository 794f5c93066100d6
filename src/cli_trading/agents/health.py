"""What an agent says of itself on /health, /status and /metrics: its dependencies (Redis, the
database, its consumers), the host's disk and memory, its process. Plain functions over what
they read; the agent (agents/base.py) calls them."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cli_trading import metrics
from cli_trading.bus import Bus, Consumer
from cli_trading.db import engine as dbengine


async def dependency_checks(
    bus: Bus | None, engine: AsyncEngine | None, consumers: Sequence[Consumer]
) -> dict[str, dict[str, Any]]:
    """Redis, the database (`engine`: None for an agent without one) and the consumers: each
    `{"ok": bool, ...}`; the dependencies' gauges are set on the way."""
    checks: dict[str, dict[str, Any]] = {}
    redis_ok = await bus.ping() if bus else False
    metrics.DEPENDENCY_UP.labels("redis").set(int(redis_ok))
    checks["redis"] = {"ok": redis_ok}
    if engine is not None:
        db_ok = await dbengine.check(engine)
        metrics.DEPENDENCY_UP.labels("database").set(int(db_ok))
        checks["database"] = {"ok": db_ok}
    lagging = [f"{c.stream}/{c.group}" for c in consumers if not c.healthy or c.stalled]
    checks["consumers"] = {"ok": not lagging, "unhealthy": lagging}
    if stalled := {f"{c.stream}/{c.group}": c.stalled for c in consumers if c.stalled}:
        checks["consumers"]["stalled"] = stalled
    return checks


def export_host_metrics(data_dir: Path) -> None:
    """Disk and memory of the host, refreshed on every scrape (alert rules read them)."""
    usage = shutil.disk_usage(data_dir if data_dir.exists() else ".")
    metrics.HOST_DISK_FREE.set(usage.free / usage.total)
    with contextlib.suppress(OSError, ValueError, KeyError, ZeroDivisionError):
        with open("/proc/meminfo") as fh:
            mem = dict(line.split(":", 1) for line in fh if ":" in line)
        kib = {k: int(v.split()[0]) for k, v in mem.items() if k in ("MemTotal", "MemAvailable")}
        metrics.HOST_MEMORY_AVAILABLE.set(kib["MemAvailable"] / kib["MemTotal"])


def process_status(*, started_at: float, mode: str, consumers: Sequence[Consumer]) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "uptimeSeconds": round(time.time() - started_at, 1),
        "mode": mode,
        "consumers": [
            {
                "stream": c.stream,
                "group": c.group,
                "name": c.name,
                "healthy": c.healthy,
                "handled": c.handled,
                "stalled": c.stalled,
            }
            for c in consumers
        ],
    }
