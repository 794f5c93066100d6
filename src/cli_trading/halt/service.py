"""Applying halt decisions (`policy.py` makes them): the live flag with its notification first
(the guarantee), then the answer, then the database record (survives restarts); metrics, audit.

`halt` and `unhalt` are synchronous and thread-safe: the orchestrator's HTTP server answers a halt
on its own thread (`server.py`) while the event loop may be busy with runs, and the loop applies
automatic halts and unhalts. One lock orders the transitions; the flag is set on the store's
blocking connection. Records are written by `Recorder`, in order, on the agent's event loop: never
on the answer's path, so a database outage does not hold a halt (or anything else) up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading import metrics
from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import NotifyEvent, Severity, halt_severity
from cli_trading.halt import policy, store
from cli_trading.halt.gate import HaltGate
from cli_trading.halt.state import HaltState, Limits
from cli_trading.logs import get_logger

log = get_logger("halts")
RETRY_S = 1.0  # a record the database refused is tried again this often


@dataclass(frozen=True, slots=True)
class Record:
    state: HaltState
    event: dict[str, Any]
    at: datetime


class Recorder:
    """Writes halt records to the database in order, on the agent's event loop. A write that fails
    (database outage) is retried every second and later records wait behind it, so the database
    ends with the latest state. `submit` may be called from any thread."""

    def __init__(self, sessions: Callable[[], AsyncSession], loop: asyncio.AbstractEventLoop) -> None:
        self.sessions, self.loop = sessions, loop
        self.pending: deque[Record] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, record: Record) -> None:
        self.loop.call_soon_threadsafe(self._add, record)

    def _add(self, record: Record) -> None:
        self.pending.append(record)
        self._idle.clear()
        self._wake.set()

    @property
    def unsaved(self) -> bool:
        return bool(self.pending)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.write():
                await _wait(stop, RETRY_S)
                continue
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait([wake, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
        await self.write()  # what is left at shutdown (a failure stays in Redis: `at_start` keeps it)

    async def write(self) -> bool:
        """Write what is pending, oldest first; False when the database refused."""
        while self.pending:
            r = self.pending[0]
            try:
                async with self.sessions() as s, s.begin():
                    await store.record(s, state=r.state, event=r.event, now=r.at)
            except Exception as exc:  # noqa: BLE001 - the flag is set; retried until the database is back
                log.error("halt state not saved to the database, retrying", error=str(exc)[:200])
                return False
            self.pending.popleft()
        self._idle.set()
        return True

    async def written(self, timeout_s: float = 5.0) -> bool:
        """Wait until every submitted record is written (True) or the timeout passed."""
        await asyncio.sleep(0)  # records submitted from this thread arrive on the next turn
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class HaltService:
    def __init__(
        self,
        *,
        store: store.HaltStore,
        gate: HaltGate,
        recorder: Recorder,
        agent: str,
        audit: Callable[..., None],
        clock: Callable[[], datetime],
        state: HaltState,
    ) -> None:
        self.store, self.gate, self.recorder = store, gate, recorder
        self.agent, self.audit, self.clock = agent, audit, clock
        self._state = state
        self._lock = threading.Lock()  # one transition at a time, from whichever thread
        self.export()

    @property
    def state(self) -> HaltState:
        return self._state

    def export(self) -> None:
        s = self._state
        metrics.HALTED.set(1 if s.halted else 0)
        metrics.HALT_INFO.clear()
        if s.halted:
            metrics.HALT_INFO.labels(s.reason or "unknown", s.mode).set(1)

    # -- transitions ----------------------------------------------------------------------------
    def halt(self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None) -> dict[str, Any]:
        """Flag and notification; returns the answer (with the orders in flight at that instant)
        once the flag is set. The record follows on the event loop."""
        with self._lock:
            now = self.clock()
            self._state = policy.halt(self._state, reason=reason, mode=mode, actor=actor, note=note, now=now)
            metrics.HALTS.labels(reason).inc()
            text = f"Trading halted: {reason}" + (f" ({note})" if note else "")
            context = {"reason": reason, "mode": mode, "actor": actor, "note": note}
            inflight = self._flag(self._notice(f"halt.{reason}", halt_severity(reason), text, **context))
            event = self._event("halt", actor=actor, source=source, note=note, detail={"inFlight": inflight})
            self._log(event, now)
            return {**self._state.to_api(), "inFlight": inflight}

    def apply(self, decision: policy.Decision | None) -> dict[str, Any] | None:
        """An automatic halt the policy decided (None: nothing to do)."""
        if decision is None:
            return None
        log.warning("automatic halt", reason=decision.reason, note=decision.note)
        return self.halt(
            reason=decision.reason, mode=decision.mode, actor=decision.actor, source=decision.source, note=decision.note
        )

    def unhalt(
        self,
        *,
        actor: str,
        source: str | None,
        note: str | None,
        force: bool,
        pnl_pct: Decimal,
        limits: Limits,
        why: str = "unhalt",
    ) -> dict[str, Any]:
        """Resume trading; raises `policy.UnhaltRefused` while the loss limit is breached."""
        with self._lock:
            before = self._state
            self._state = policy.unhalt(before, pnl_pct=pnl_pct, limits=limits, force=force)
            now = self.clock()
            severity: Severity = "warning" if why == "unhalt" and force else "info"
            text = f"Trading resumed ({why}) after {before.reason}" + (f": {note}" if note else "")
            context = {"previousReason": before.reason, "actor": actor, "force": force, "note": note}
            self._flag(self._notice(f"unhalt.{why}", severity, text, **context))
            detail = {"previousReason": before.reason, "force": force}
            event = self._event(why, actor=actor, source=source, note=note, detail=detail, reason=before.reason)
            self._log(event, now)
            return self._state.to_api()

    # -- the live flag --------------------------------------------------------------------------
    async def restore(self, saved_at: datetime | None) -> None:
        """At start, before anything trades: publish the state `policy.at_start` chooses."""
        live = await self.gate.read()
        chosen = policy.at_start(self._state, saved_at=saved_at, live=live)
        with self._lock:
            if chosen is not self._state:
                log.warning("a halt newer than the database's state found in redis: keeping it", reason=chosen.reason)
                self._state = chosen
                self.export()
                note = "found in redis at start, not recorded"
                self._log(self._event("recovered", actor="system", source=None, note=note), self.clock())
            self.store.publish(self._state)

    async def reconcile(self) -> None:
        """Every second: Redis lost the flag (flush, restart) or shows another state → set it."""
        live = await self.gate.read()
        with self._lock:
            if policy.flag_is_stale(self._state, live):
                log.warning("halt flag missing or stale in redis, restoring", halted=self._state.halted)
                self.store.publish(self._state)

    # -- helpers ----------------------------------------------------------------------------------
    def _flag(self, notice: NotifyEvent) -> list[str]:
        """The live flag and its notification; the orders in flight at that instant."""
        self.export()
        try:
            return self.store.publish(self._state, notice)  # from here on, no order outside it can pass
        except REDIS_DOWN as exc:  # the executor's gate fails closed meanwhile; reconcile sets it
            log.error("halt flag not published to redis", error=str(exc))
            return []

    def _notice(self, type_: str, severity: Severity, message: str, **context: Any) -> NotifyEvent:
        return NotifyEvent(type=type_, severity=severity, message=message, context={"agent": self.agent, **context})

    def _event(
        self,
        action: str,
        *,
        actor: str,
        source: str | None,
        note: str | None,
        detail: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        s = self._state
        return {
            "action": action,
            "reason": reason or s.reason,
            "mode": s.mode,
            "actor": actor,
            "source": source,
            "note": note,
            "detail": detail,
        }

    def _log(self, event: dict[str, Any], at: datetime) -> None:
        """Audit and record (both written later, on the event loop)."""
        self.audit(
            f"halt:{event['action']}",
            actor=event["actor"],
            source=event["source"],
            result=event["reason"],
            note=event["note"],
        )
        self.recorder.submit(Record(self._state, event, at))
