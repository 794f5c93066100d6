"""The orchestrator's watchdogs, once a second: the trading day's rollover, the Redis halt flag
kept equal to the durable state, flatten mode until flat, and the automatic `system_error` halts
for a message dead-lettered on the order path and for a database outage with orders in flight."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import HaltMode, HaltReason, Stream, dlq_of
from cli_trading.db import engine as dbengine

if TYPE_CHECKING:
    from cli_trading.agents.orchestrator import Orchestrator

WATCHED_DLQS = (dlq_of(Stream.ORDERS), dlq_of(Stream.STATUS))


class Watchdogs:
    def __init__(self, orc: Orchestrator) -> None:
        self.orc = orc
        self.dlq_seen: dict[str, int] = {}
        self.db_down_since: float | None = None

    async def start(self) -> None:
        """Dead letters already there at start were seen (and halted for) before."""
        for dlq in WATCHED_DLQS:
            self.dlq_seen[dlq] = await self.orc.redis.xlen(dlq)

    async def run(self) -> None:
        orc = self.orc
        while not orc.stop_event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(orc.stop_event.wait(), 1.0)
            try:
                await orc.roll_day()
                await orc.halts.reconcile()
                await orc.keep_flattening()
                await self._dead_letters()
            except REDIS_DOWN:
                pass
            except Exception as exc:  # noqa: BLE001 - a watchdog must keep watching
                orc.log.warning("watch step failed", error=str(exc)[:200])
            await self._database()

    async def _dead_letters(self) -> None:
        for dlq, seen in self.dlq_seen.items():
            n = await self.orc.redis.xlen(dlq)
            if n > seen:
                await self._halt(f"{n - seen} message(s) dead-lettered on {dlq}")
            self.dlq_seen[dlq] = n

    async def _database(self) -> None:
        loop = asyncio.get_running_loop()
        if await dbengine.check(self.orc.engine):  # type: ignore[arg-type]
            self.db_down_since = None
            return
        self.db_down_since = self.db_down_since or loop.time()
        down_for = loop.time() - self.db_down_since
        if down_for >= self.orc.settings.db_outage_halt_s and self.orc.runs.in_flight():
            await self._halt(f"database unreachable for {down_for:.0f}s with orders in flight")

    async def _halt(self, note: str) -> None:
        if not self.orc.halts.state.halted:
            await self.orc.halts.halt(
                reason=HaltReason.SYSTEM_ERROR, mode=HaltMode.HALT, actor="system", source=None, note=note
            )
