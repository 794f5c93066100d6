"""Applying halt decisions (the policy is `trading/halt.py`): the Redis flag with its
notification first (the guarantee), then the database (survives restarts); metrics and audit.
A transition is written by `HaltWriter` without waiting for the event loop (see there)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading import metrics
from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import NotifyEvent, halt_severity
from cli_trading.control.halt_writer import HaltWriter
from cli_trading.db import repo
from cli_trading.haltgate import HaltGate
from cli_trading.logs import get_logger
from cli_trading.trading import halt as policy
from cli_trading.trading.halt import HaltState, Limits

log = get_logger("halts")


class HaltController:
    def __init__(
        self,
        *,
        gate: HaltGate,
        writer: HaltWriter,
        sessions: Callable[[], Any],
        agent: str,
        audit: Callable[..., None],
        clock: Callable[[], datetime],
        state: HaltState,
    ) -> None:
        self.gate, self.writer, self.sessions, self.audit, self.clock = gate, writer, sessions, audit, clock
        self.agent = agent
        self.state = state
        self.unsaved = False  # the last durable write failed: `reconcile` retries it
        # transitions come from the event loop and from the halt door's thread: one at a time
        self.lock = threading.Lock()
        self.export()

    def export(self) -> None:
        s = self.state
        metrics.HALTED.set(1 if s.halted else 0)
        metrics.HALT_INFO.clear()
        if s.halted:
            metrics.HALT_INFO.labels(s.reason or "unknown", s.mode).set(1)

    async def restore(self) -> None:
        """Publish the durable state to Redis before anything trades."""
        await self.gate.publish(self.state)

    async def halt(self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None) -> dict[str, Any]:
        result, unrecorded = self._halt(reason=reason, mode=mode, actor=actor, source=source, note=note)
        if unrecorded:
            await self._record_later(*unrecorded)
        return result

    def halt_now(self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None) -> dict[str, Any]:
        """The halt, entirely synchronous: for the halt door's thread, which uses it only when
        the writer records to the database itself (PostgreSQL)."""
        result, unrecorded = self._halt(reason=reason, mode=mode, actor=actor, source=source, note=note)
        assert unrecorded is None
        return result

    def _halt(
        self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None
    ) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
        with self.lock:
            now = self.clock()
            self.state = policy.halt(self.state, reason=reason, mode=mode, actor=actor, note=note, now=now)
            metrics.HALTS.labels(reason).inc()
            notice = self._notice(
                f"halt.{reason}",
                halt_severity(reason),
                f"Trading halted: {reason}" + (f" ({note})" if note else ""),
                reason=reason,
                mode=mode,
                actor=actor,
                note=note,
            )
            inflight, unrecorded = self._apply("halt", actor=actor, source=source, note=note, now=now, notice=notice)
            return {**self.state.to_api(), "inFlight": inflight}, unrecorded

    async def unhalt(
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
        with self.lock:
            before = self.state
            self.state = policy.unhalt(before, pnl_pct=pnl_pct, limits=limits, force=force)  # may raise UnhaltRefused
            now = self.clock()
            notice = self._notice(
                f"unhalt.{why}",
                "info" if why != "unhalt" or not force else "warning",
                f"Trading resumed ({why}) after {before.reason}" + (f": {note}" if note else ""),
                previousReason=before.reason,
                actor=actor,
                force=force,
                note=note,
            )
            _, unrecorded = self._apply(
                why,
                actor=actor,
                source=source,
                note=note,
                now=now,
                notice=notice,
                detail={"previousReason": before.reason, "force": force},
                reason=before.reason,
            )
        if unrecorded:
            await self._record_later(*unrecorded)
        return self.state.to_api()

    def _notice(self, type_: str, severity: str, message: str, **context: Any) -> NotifyEvent:
        return NotifyEvent(type=type_, severity=severity, message=message, context={"agent": self.agent, **context})

    def _apply(
        self,
        action: str,
        *,
        actor: str,
        source: str | None,
        note: str | None,
        now: datetime,
        notice: NotifyEvent,
        detail: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> tuple[list[str], tuple[Any, ...] | None]:
        """Flag and notification, then the durable record, synchronously (the caller holds the
        lock). Returns the orders in flight when the flag was set (a halt's record lists them)
        and, when the writer cannot record to this database (SQLite), what `_record_later` must
        write."""
        self.export()
        state = self.state
        try:
            inflight = self.writer.flag(state, notice)  # from here on, no order outside it can pass
        except REDIS_DOWN as exc:  # the reconcile loop republishes when Redis is back
            log.error("halt flag not published to redis", error=str(exc))
            inflight = []
        event = {
            "action": action,
            "reason": reason or state.reason,
            "mode": state.mode,
            "actor": actor,
            "source": source,
            "note": note,
            "detail": {"inFlight": inflight} if action == "halt" else detail,
        }
        self.audit(f"halt:{action}", actor=actor, source=source, result=event["reason"], note=note)
        if not self.writer.writes_database:
            return inflight, (state, event, now)
        try:
            self.writer.record(state, event, now)
            self.unsaved = False
        except Exception as exc:  # noqa: BLE001 - the live flag is set; the reconcile loop retries
            log.error("halt state not saved to the database", error=str(exc)[:200])
            self.unsaved = True
        return inflight, None

    async def _record_later(self, state: HaltState, event: dict[str, Any], now: datetime) -> None:
        """On the agent's async session (SQLite; and the retries after an outage, which must
        not stall the loop)."""
        try:
            async with self.sessions() as s, s.begin():
                await repo.save_halt(s, state=state, event=event, now=now)
            self.unsaved = False
        except Exception as exc:  # noqa: BLE001 - the live flag is set; the reconcile loop retries
            log.error("halt state not saved to the database", error=str(exc)[:200])
            self.unsaved = True

    async def reconcile(self) -> None:
        """Every second: Redis lost the flag (flush, restart) → put it back; a database write
        that failed → try again."""
        live = await self.gate.read()
        if live is None or live.halted != self.state.halted or live.mode != self.state.mode:
            log.warning("halt flag missing or stale in redis, restoring", halted=self.state.halted)
            with self.lock:  # never over a transition the halt door is writing
                self.writer.publish(self.state)
        if self.unsaved:
            event = {
                "action": "resync",
                "reason": self.state.reason,
                "mode": self.state.mode,
                "actor": "system",
                "source": None,
                "note": "saved after a database outage",
                "detail": None,
            }
            await self._record_later(self.state, event, self.clock())
