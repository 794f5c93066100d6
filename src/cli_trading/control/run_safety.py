"""Crash safety of runs, in the orchestrator (docs/architecture.md, "Runs"):

- a run is committed before its 202 is answered and before its first message goes out
  (`accept`), naming its order (`Run.order_id`); if it cannot be, it was never accepted (503);
- a strategy run's sizing is committed before its risk request goes out (`on_signals`);
- a risk rejection is committed before its message is acknowledged (risk answers a request
  once: the answer could not be had again);
- every other change is written within `FLUSH_INTERVAL_S` (`flush_loop`), because what it
  records can be found again after a crash: at start, the runs left open are resolved
  (`resolve_open_runs`) from the executor's orders, which the executor settles before it
  publishes a status: finished with the order's final status, sent to risk again when no order
  exists (risk, the orchestrator and the executor are idempotent on its ids), or left to the
  exec.status still on its way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from cli_trading.bus import REDIS_DOWN
from cli_trading.control.runs import Run, resolve

if TYPE_CHECKING:
    from cli_trading.agents.orchestrator import Orchestrator


async def resolve_open_runs(orc: Orchestrator, orders: dict[str, Any]) -> None:
    counts: dict[str, int] = {}
    for run in list(orc.runs.active.values()):
        res = resolve(run, orders.get(run.order_id))
        counts[res.action] = counts.get(res.action, 0) + 1
        if res.action == "finish":
            orc.runs.finish(run, res.outcome or "failed", reason=res.reason, now=orc.clock())
        elif res.action == "resend":
            await orc._to_risk(run, manual=run.manual)
    await orc.runs.durable(orc.session)
    if counts:
        orc.log.info("open runs resolved at start", **counts)


async def accept(orc: Orchestrator, run: Run) -> None:
    """The run is in the database before anything acts on it or the 202 is answered."""
    from cli_trading.agents.orchestrator import RunRefused

    try:
        await orc.runs.durable(orc.session)
    except Exception as exc:  # noqa: BLE001 - any failure to commit: not accepted
        orc.runs.forget(run)
        raise RunRefused(503, f"run not accepted: the database is unavailable ({type(exc).__name__})") from exc


async def send(orc: Orchestrator, run: Run, publishing: Awaitable[Any]) -> None:
    """The run's first message; if Redis refuses it, the run ends failed (and is recorded)."""
    from cli_trading.agents.orchestrator import RunRefused

    try:
        await publishing
    except REDIS_DOWN as exc:
        orc.runs.finish(run, "failed", reason="message bus unavailable", now=orc.clock())
        with contextlib.suppress(Exception):
            await orc.runs.durable(orc.session)
        raise RunRefused(503, "run not accepted: Redis is unavailable", run) from exc


FLUSH_INTERVAL_S = 0.1


async def flush_loop(orc: Orchestrator) -> None:
    """Commit the runs' other changes every `FLUSH_INTERVAL_S` (one transaction for all)."""
    while not orc.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(orc.stop_event.wait(), FLUSH_INTERVAL_S)
        try:
            await orc.runs.durable(orc.session)
        except Exception as exc:  # noqa: BLE001 - the database is out: kept, written on the next try
            orc.log.warning("writing runs failed, will retry", error=str(exc)[:200])
