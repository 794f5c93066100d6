"""Crash safety of runs, in the orchestrator (docs/architecture.md, "Runs"):

- a run is committed before its 202 is answered and before its first message goes out
  (`accept`), naming its order (`Run.order_id`); if it cannot be, it was never accepted (503),
  and since the commit may have landed all the same (the connection died after the server
  committed), the refusal is remembered (in memory, and in Redis against a restart) and the run
  marked failed (`runs.REFUSED`) once the database answers: a run answered 503 never trades,
  unless a retry with its request id takes it over;
- a strategy run's sizing is committed before its risk request goes out (`on_signals`);
- a fill for a run recorded otherwise (its first message reported lost, yet it got through)
  makes it `filled`, committed before the status is acknowledged (`filled_after_all`): the
  ledgers agree;
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
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import iso
from cli_trading.control.runs import REFUSED, Run, RunBook, RunRefused, resolve

Sessions = Callable[[], Any]  # an async session factory (`Agent.session`)

# hash: request id → when, of the runs answered 503 whose refusal is not in `runs` yet (a
# restart before the database came back must not send them to risk); emptied as they are written
REFUSED_KEY = "cli-trading:runs:refused"
FLUSH_INTERVAL_S = 0.1


class RunSafety:
    """What makes the run book crash-safe: the run book, the database's sessions, Redis (the
    refusals), the clock, the audit and the log. No orchestrator."""

    def __init__(
        self,
        runs: RunBook,
        *,
        sessions: Sessions,
        redis: Any,
        clock: Callable[[], datetime],
        audit: Callable[..., None],
        log: Any,
    ) -> None:
        self.runs, self.sessions, self.redis, self.clock, self.audit, self.log = (
            runs, sessions, redis, clock, audit, log
        )

    async def resolve_open_runs(self, orders: dict[str, Any], *, to_risk: Callable[[Run], Awaitable[None]]) -> None:
        runs = self.runs
        refused = {k.decode() if isinstance(k, bytes) else k for k in await self.redis.hkeys(REFUSED_KEY)}
        counts: dict[str, int] = {}
        for run in list(runs.active.values()):
            order = orders.get(run.order_id)
            if order is None and run.request_id in refused:  # answered 503: never sent, never to be
                runs.finish(run, "failed", reason=REFUSED, now=self.clock())
                counts["refused"] = counts.get("refused", 0) + 1
                continue
            res = resolve(run, order)
            counts[res.action] = counts.get(res.action, 0) + 1
            if res.action == "finish":
                runs.finish(run, res.outcome or "failed", reason=res.reason, now=self.clock())
            elif res.action == "resend":
                await to_risk(run)
        await runs.durable(self.sessions)
        if refused:  # each is failed in `runs` now, or was never there
            await self.redis.hdel(REFUSED_KEY, *refused)
        if counts:
            self.log.info("open runs resolved at start", **counts)

    async def accept(self, run: Run, *, retried: bool = False) -> None:
        """The run is in the database before anything acts on it or the 202 is answered. `retried`:
        it takes over a refused run of the same request id, whose refusal is forgotten."""
        try:
            await self.runs.durable(self.sessions)
        except Exception as exc:  # noqa: BLE001 - any failure to commit: not accepted
            self.runs.refuse(run, now=self.clock())
            with contextlib.suppress(Exception):  # Redis out too: remembered in memory only
                await self.redis.hset(REFUSED_KEY, run.request_id, iso(self.clock()))
            raise RunRefused(503, f"run not accepted: the database is unavailable ({type(exc).__name__})") from exc
        if run.request_id in self.runs.duplicates:  # a finished run of that id was in the database
            self.runs.duplicates.discard(run.request_id)
            existing = await self.runs.lookup(run.request_id, self.sessions)
            raise RunRefused(409, f"requestId {run.request_id} already exists", existing)
        if retried:
            with contextlib.suppress(Exception):  # Redis out: its first message cannot go out either
                await self.redis.hdel(REFUSED_KEY, run.request_id)

    async def forget_settled_refusals(self) -> None:
        """Refusals written to `runs` need no reminder in Redis any more."""
        ids, self.runs.settled_refusals = self.runs.settled_refusals, []
        if ids:
            try:
                await self.redis.hdel(REFUSED_KEY, *ids)
            except Exception:  # noqa: BLE001 - kept for the next try
                self.runs.settled_refusals += ids
                raise

    async def send(self, run: Run, publishing: Awaitable[Any]) -> None:
        """The run's first message; if Redis refuses it, the run ends failed (and is recorded).
        Unless the run moved on meanwhile: its answer came back (risk's, or the analyst's), so the
        message did get through and only its reply was lost (a timeout) — the run goes on, accepted;
        failing it would contradict the order it may already have sent."""
        steps = len(run.steps)
        try:
            await publishing
        except REDIS_DOWN as exc:
            if len(run.steps) > steps:
                self.log.warning("first message reported lost but answered: the run goes on", requestId=run.request_id)
                return
            self.runs.finish(run, "failed", reason="message bus unavailable", now=self.clock())
            with contextlib.suppress(Exception):
                await self.runs.durable(self.sessions)
            raise RunRefused(503, "run not accepted: Redis is unavailable", run) from exc

    def filled_after_all(self, run: Run, order_id: str) -> bool:
        """A fill for a run recorded otherwise: the ledger has the fill, the run must not say
        otherwise (the caller commits it before its ack: a restart would not find it open)."""
        was = run.outcome
        self.runs.filled_after_all(run, now=self.clock())
        self.audit("run:filled", request_id=run.request_id, target=order_id, result=run.reason)
        self.log.warning("a fill for a run recorded otherwise: now filled", requestId=run.request_id, was=was)
        return True

    async def flush_loop(self, stop: asyncio.Event) -> None:
        """Commit the runs' other changes every `FLUSH_INTERVAL_S` (one transaction for all)."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
            try:
                await self.runs.durable(self.sessions)
                await self.forget_settled_refusals()
            except Exception as exc:  # noqa: BLE001 - the database (or Redis) is out: kept, written on the next try
                self.log.warning("writing runs failed, will retry", error=str(exc)[:200])
