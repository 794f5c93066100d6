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
Record = tuple[HaltState, dict[str, Any], datetime]  # what `_record_now` / `_record_later` write


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

    async def restore(self, saved_at: datetime | None) -> None:
        """Publish the durable state to Redis before anything trades. One exception: a halt in
        Redis newer than the database's last transition (`saved_at`) is kept and recorded. The
        halt door answers before it records, so a crash in those milliseconds leaves a halt only
        in Redis; a halt is never undone by a restart."""
        live = await self.gate.read()
        if (
            live is not None
            and live.halted
            and not self.state.halted
            and live.halted_at is not None
            and (saved_at is None or live.halted_at > saved_at)
        ):
            log.warning("a halt newer than the database's state found in redis: keeping it", reason=live.reason)
            self.state = live
            self.export()
            event = self._event("recovered", actor="system", source=None, note="found in redis at start, not recorded")
            self._audit(event)
            await self._record_later(live, event, self.clock())
        with self.lock:
            self.writer.publish(self.state)

    async def halt(self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None) -> dict[str, Any]:
        """From the event loop: flag and notification, the record, then the answer."""
        with self.lock:
            result, record = self._halt(reason=reason, mode=mode, actor=actor, source=source, note=note)
            self._audit(record[1])
            recorded = self._record_now(*record)
        if not recorded:
            await self._record_later(*record)
        return result

    def halt_now(
        self,
        *,
        reason: str,
        mode: str,
        actor: str,
        source: str | None,
        note: str | None,
        reply: Callable[[dict[str, Any]], None],
    ) -> None:
        """From the halt door's thread (PostgreSQL only), entirely synchronous: flag and
        notification, the answer (`reply`), then the record. The guarantee needs the flag only;
        the record follows within milliseconds, under the same lock, so no other transition is
        recorded in between (and `restore` keeps a halt a crash left unrecorded)."""
        with self.lock:
            result, record = self._halt(reason=reason, mode=mode, actor=actor, source=source, note=note)
            try:
                reply(result)  # before the audit too: that wakes the event loop, a system call
            finally:
                self._audit(record[1])
                self._record_now(*record)

    def _halt(
        self, *, reason: str, mode: str, actor: str, source: str | None, note: str | None
    ) -> tuple[dict[str, Any], Record]:
        """The transition and its flag (the caller holds the lock); returns the answer and the
        record to write."""
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
        inflight = self._flag(notice)
        event = self._event("halt", actor=actor, source=source, note=note, detail={"inFlight": inflight})
        return {**self.state.to_api(), "inFlight": inflight}, (self.state, event, now)

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
            self._flag(notice)
            event = self._event(
                why,
                actor=actor,
                source=source,
                note=note,
                detail={"previousReason": before.reason, "force": force},
                reason=before.reason,
            )
            self._audit(event)
            record = (self.state, event, now)
            recorded = self._record_now(*record)
        if not recorded:
            await self._record_later(*record)
        return self.state.to_api()

    def _notice(self, type_: str, severity: str, message: str, **context: Any) -> NotifyEvent:
        return NotifyEvent(type=type_, severity=severity, message=message, context={"agent": self.agent, **context})

    def _flag(self, notice: NotifyEvent) -> list[str]:
        """The live flag and its notification; returns the orders in flight at that instant."""
        self.export()
        try:
            return self.writer.flag(self.state, notice)  # from here on, no order outside it can pass
        except REDIS_DOWN as exc:  # the reconcile loop republishes when Redis is back
            log.error("halt flag not published to redis", error=str(exc))
            return []

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
        s = self.state
        return {
            "action": action,
            "reason": reason or s.reason,
            "mode": s.mode,
            "actor": actor,
            "source": source,
            "note": note,
            "detail": detail,
        }

    def _audit(self, event: dict[str, Any]) -> None:
        self.audit(
            f"halt:{event['action']}",
            actor=event["actor"],
            source=event["source"],
            result=event["reason"],
            note=event["note"],
        )

    def _record_now(self, state: HaltState, event: dict[str, Any], now: datetime) -> bool:
        """Synchronously, where the writer can (PostgreSQL); False when the caller must use
        `_record_later` (SQLite)."""
        if not self.writer.writes_database:
            return False
        try:
            self.writer.record(state, event, now)
            self.unsaved = False
        except Exception as exc:  # noqa: BLE001 - the live flag is set; the reconcile loop retries
            log.error("halt state not saved to the database", error=str(exc)[:200])
            self.unsaved = True
        return True

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
            event = self._event("resync", actor="system", source=None, note="saved after a database outage")
            await self._record_later(self.state, event, self.clock())
