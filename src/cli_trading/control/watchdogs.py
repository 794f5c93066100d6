"""The orchestrator's watchdogs, once a second: the trading day's rollover, the Redis halt flag
kept equal to the durable state, flatten mode until flat, and the automatic `system_error` halts
for a message dead-lettered on the order path and for a database outage with orders in flight.

They take the parts they watch (no orchestrator): every decision is `halt/policy.py`'s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cli_trading.bus import REDIS_DOWN
from cli_trading.contracts import Stream, dlq_of
from cli_trading.control.runs import RunBook
from cli_trading.halt import policy
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import Ledger

WATCHED_DLQS = (dlq_of(Stream.ORDERS), dlq_of(Stream.STATUS))


class Halts(Protocol):
    """What the watchdogs use of `halt.service.HaltService`."""

    @property
    def state(self) -> HaltState: ...

    def apply(self, decision: policy.Decision | None) -> dict[str, Any] | None: ...

    async def reconcile(self) -> None: ...


@dataclass
class Watchdogs:
    redis: Any  # redis.asyncio: XLEN of the dead-letter streams
    halts: Halts
    runs: RunBook
    ledger: Ledger
    db_up: Callable[[], Awaitable[bool]]
    db_outage_halt_s: float
    roll_day: Callable[[], Awaitable[None]]
    flatten: Callable[[], Awaitable[list[str]]]  # places closing orders for what is open
    log: Any
    monotonic: Callable[[], float] = time.monotonic
    dlq_seen: dict[str, int] = field(default_factory=dict)
    db_down_since: float | None = None
    flatten_rounds: policy.FlattenRounds = field(default_factory=policy.FlattenRounds)  # for this halt

    async def start(self) -> None:
        """Dead letters already there at start were seen (and halted for) before."""
        for dlq in WATCHED_DLQS:
            self.dlq_seen[dlq] = await self.redis.xlen(dlq)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            await self.step()

    async def step(self) -> None:
        """One round of every watchdog; a failing one never stops the others."""
        try:
            await self.roll_day()
            await self.halts.reconcile()
            await self.keep_flattening()
            await self.dead_letters()
        except REDIS_DOWN:
            pass
        except Exception as exc:  # noqa: BLE001 - a watchdog must keep watching
            self.log.warning("watch step failed", error=str(exc)[:200])
        await self.database()

    async def keep_flattening(self) -> None:
        """Flatten mode closes what is still open once nothing is on its way (`policy.flatten_round`
        decides)."""
        self.flatten_rounds, step = policy.flatten_round(
            self.halts.state,
            self.flatten_rounds,
            orders_in_flight=bool(self.runs.in_flight()),
            positions_open=bool(self.ledger.holdings()),
        )
        if step == "close":
            self.log.warning("flatten: positions still open, closing them", round=self.flatten_rounds.done)
            await self.flatten()
        elif step == "give_up":
            symbols = [h["symbol"] for h in self.ledger.holdings()]
            self.log.error("flatten: positions still open after the last round, close them by hand", symbols=symbols)

    async def dead_letters(self) -> None:
        new: dict[str, int] = {}
        for dlq, seen in self.dlq_seen.items():
            n = await self.redis.xlen(dlq)
            new[dlq], self.dlq_seen[dlq] = max(0, n - seen), n
        self.halts.apply(policy.dead_letters(self.halts.state, new=new))

    async def database(self) -> None:
        now = self.monotonic()
        if await self.db_up():
            self.db_down_since = None
            return
        self.db_down_since = self.db_down_since or now
        decision = policy.database_outage(
            self.halts.state,
            down_since=self.db_down_since,
            now=now,
            limit_s=self.db_outage_halt_s,
            orders_in_flight=bool(self.runs.in_flight()),
        )
        self.halts.apply(decision)
