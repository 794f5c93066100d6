"""Applying halt decisions (the policy is `trading/halt.py`): Redis gate first (the guarantee),
then, together, the database (survives restarts) and the notification; metrics and audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading import metrics
from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import halt_severity
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
        sessions: Callable[[], Any],
        notify: Callable[..., Awaitable[None]],
        audit: Callable[..., None],
        clock: Callable[[], datetime],
        state: HaltState,
    ) -> None:
        self.gate, self.sessions, self.notify, self.audit, self.clock = gate, sessions, notify, audit, clock
        self.state = state
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
        now = self.clock()
        self.state = policy.halt(self.state, reason=reason, mode=mode, actor=actor, note=note, now=now)
        inflight = await self._publish()  # from here on, no order outside `inflight` can pass
        metrics.HALTS.labels(reason).inc()
        # the durable record and the notification are independent: write both at once
        await asyncio.gather(
            self._record("halt", actor=actor, source=source, note=note, now=now, detail={"inFlight": inflight}),
            self.notify(
                f"halt.{reason}",
                halt_severity(reason),
                f"Trading halted: {reason}" + (f" ({note})" if note else ""),
                reason=reason,
                mode=mode,
                actor=actor,
                note=note,
            ),
        )
        return {**self.state.to_api(), "inFlight": inflight}

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
        before = self.state
        self.state = policy.unhalt(before, pnl_pct=pnl_pct, limits=limits, force=force)  # may raise UnhaltRefused
        now = self.clock()
        await self._publish()
        msg = f"Trading resumed ({why}) after {before.reason}" + (f": {note}" if note else "")
        await asyncio.gather(
            self._record(
                why,
                actor=actor,
                source=source,
                note=note,
                now=now,
                detail={"previousReason": before.reason, "force": force},
                reason=before.reason,
            ),
            self.notify(
                f"unhalt.{why}",
                "info" if why != "unhalt" or not force else "warning",
                msg,
                previousReason=before.reason,
                actor=actor,
                force=force,
                note=note,
            ),
        )
        return self.state.to_api()

    async def _publish(self) -> list[str]:
        self.export()
        try:
            return await self.gate.publish(self.state)
        except REDIS_DOWN as exc:  # the reconcile loop republishes when Redis is back
            log.error("halt flag not published to redis", error=str(exc))
            return []

    async def _record(
        self,
        action: str,
        *,
        actor: str,
        source: str | None,
        note: str | None,
        now: datetime,
        detail: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        event = {
            "action": action,
            "reason": reason or self.state.reason,
            "mode": self.state.mode,
            "actor": actor,
            "source": source,
            "note": note,
            "detail": detail,
        }
        self.audit(f"halt:{action}", actor=actor, source=source, result=event["reason"], note=note)
        try:
            async with self.sessions() as s, s.begin():
                await repo.save_halt(s, state=self.state, event=event, now=now)
        except Exception as exc:  # noqa: BLE001 - the live flag is set; the reconcile loop retries
            log.error("halt state not saved to the database", error=str(exc)[:200])
            self.unsaved = True
            return
        self.unsaved = False

    unsaved = False

    async def reconcile(self) -> None:
        """Every second: Redis lost the flag (flush, restart) → put it back; a database write
        that failed → try again."""
        live = await self.gate.read()
        if live is None or live.halted != self.state.halted or live.mode != self.state.mode:
            log.warning("halt flag missing or stale in redis, restoring", halted=self.state.halted)
            await self.gate.publish(self.state)
        if self.unsaved:
            try:
                async with self.sessions() as s, s.begin():
                    await repo.save_halt(
                        s,
                        state=self.state,
                        now=self.clock(),
                        event={
                            "action": "resync",
                            "reason": self.state.reason,
                            "mode": self.state.mode,
                            "actor": "system",
                            "source": None,
                            "note": "saved after a database outage",
                            "detail": None,
                        },
                    )
                self.unsaved = False
            except Exception:  # noqa: BLE001
                pass
