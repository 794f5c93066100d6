"""The orchestrator's watchdogs, once a second: the trading day's rollover, the Redis halt flag
kept equal to the durable state, flatten mode until flat, and the automatic `system_error` halts
for a message dead-lettered on the order path and for a database outage with orders in flight."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import Stream, dlq_of
from cli_trading.db import engine as dbengine
from cli_trading.halt import policy

if TYPE_CHECKING:
    from cli_trading.agents.orchestrator import Orchestrator

WATCHED_DLQS = (dlq_of(Stream.ORDERS), dlq_of(Stream.STATUS))


class Watchdogs:
    def __init__(self, orc: Orchestrator) -> None:
        self.orc = orc
        self.dlq_seen: dict[str, int] = {}
        self.db_down_since: float | None = None
        self.flatten_rounds = policy.FlattenRounds()  # flatten mode's closing rounds for this halt

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
                await self._keep_flattening()
                await self._dead_letters()
            except REDIS_DOWN:
                pass
            except Exception as exc:  # noqa: BLE001 - a watchdog must keep watching
                orc.log.warning("watch step failed", error=str(exc)[:200])
            await self._database()

    async def _keep_flattening(self) -> None:
        """Flatten mode closes what is still open once nothing is on its way (`policy.flatten_round`
        decides)."""
        orc = self.orc
        self.flatten_rounds, step = policy.flatten_round(
            orc.halts.state,
            self.flatten_rounds,
            orders_in_flight=bool(orc.runs.in_flight()),
            positions_open=bool(orc.ledger.holdings()),
        )
        if step == "close":
            orc.log.warning("flatten: positions still open, closing them", round=self.flatten_rounds.done)
            await orc.flatten()
        elif step == "give_up":
            symbols = [h["symbol"] for h in orc.ledger.holdings()]
            orc.log.error("flatten: positions still open after the last round, close them by hand", symbols=symbols)

    async def _dead_letters(self) -> None:
        new: dict[str, int] = {}
        for dlq, seen in self.dlq_seen.items():
            n = await self.orc.redis.xlen(dlq)
            new[dlq], self.dlq_seen[dlq] = max(0, n - seen), n
        self.orc.halts.apply(policy.dead_letters(self.orc.halts.state, new=new))

    async def _database(self) -> None:
        now = asyncio.get_running_loop().time()
        if await dbengine.check(self.orc.engine):  # type: ignore[arg-type]  # set at start
            self.db_down_since = None
            return
        self.db_down_since = self.db_down_since or now
        decision = policy.database_outage(
            self.orc.halts.state,
            down_since=self.db_down_since,
            now=now,
            limit_s=self.orc.settings.db_outage_halt_s,
            orders_in_flight=bool(self.orc.runs.in_flight()),
        )
        self.orc.halts.apply(decision)
