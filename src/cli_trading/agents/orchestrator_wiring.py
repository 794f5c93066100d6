"""The orchestrator's parts, built in one place: `found_at_start` reads what the database holds,
`wire_orchestrator` builds every part from the settings and the agent's services (agents/wiring.py)
and that. The orchestrator then starts them (restores the halt, resolves the open runs) and routes
messages between them; each part is handed only what it uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.agents.wiring import Services
from cli_trading.control.days import TradingDays
from cli_trading.control.overview import Overview
from cli_trading.control.params import Params
from cli_trading.control.run_safety import RunSafety
from cli_trading.control.runs import Run, RunBook, from_row
from cli_trading.control.watchdogs import Watchdogs
from cli_trading.db import repo, run_repo
from cli_trading.halt.gate import HaltGate
from cli_trading.halt.service import HaltService, Recorder
from cli_trading.halt.state import HaltState, Limits
from cli_trading.halt.store import HaltStore
from cli_trading.trading import day as tday
from cli_trading.trading.ledger import Ledger, replay


@dataclass(frozen=True)
class Found:
    """What the database holds at start."""

    ledger: Ledger  # the fills replayed, marked at the saved prices
    halt: HaltState
    halt_saved_at: datetime | None
    today: tday.TradingDay | None  # None: today's trading day has not started yet
    open_runs: list[Run]
    open_orders: dict[str, Any]  # the open runs' orders rows, by order id


async def found_at_start(sessions: Callable[[], Any], *, starting_cash: Decimal, now: datetime) -> Found:
    async with sessions() as sess:
        ledger = replay(starting_cash, await repo.all_fills(sess), await repo.load_marks(sess))
        halt = await repo.load_halt(sess)
        halt_saved_at = await repo.halt_saved_at(sess)
        today = TradingDays.from_row(await repo.get_day(sess, day=tday.day_of(now)))
        runs = [from_row(r) for r in await run_repo.open_runs(sess)]
        orders = await repo.get_orders(sess, order_ids=[r.order_id for r in runs])
    return Found(ledger, halt, halt_saved_at, today, runs, {o.order_id: o for o in orders})


@dataclass(frozen=True)
class OrchestratorParts:
    found: Found  # what the database held at start: on_start restores the halt and the runs from it
    runs: RunBook  # the runs in flight (and the recently finished)
    ledger: Ledger  # the PnL view: every fill, marked to market
    days: TradingDays
    halt_store: HaltStore  # the flag's writer (closed on stop)
    recorder: Recorder  # the halt's events, written to the database from the agent's loop
    halts: HaltService
    params: Params  # optimization requests and proposals
    safety: RunSafety  # a run accepted is durable; runs open at start are resolved
    watchdogs: Watchdogs  # the day's rollover, the halt's reconciliation, dead letters, the database
    overview: Overview  # the console's one document (GET /admin/overview), its sources cached


def wire_orchestrator(
    svc: Services,
    found: Found,
    *,
    loop: asyncio.AbstractEventLoop,
    db_up: Callable[[], Awaitable[bool]],
    roll_day: Callable[[], Awaitable[None]],
    flatten: Callable[[], Awaitable[list[str]]],
    pnl: Callable[[], dict[str, Any]],
    health: Callable[[], Awaitable[dict[str, dict[str, Any]]]],
    process: Callable[[], dict[str, Any]],
) -> OrchestratorParts:
    """The orchestrator's parts from the settings (limits, symbols, halt thresholds, Redis URL),
    what was found at start and the agent's services; `roll_day` and `flatten` are the
    orchestrator's own, called by the watchdogs, `pnl`, `health` and `process` its views, read by
    the overview."""
    s, sessions, redis, clock, audit, log = svc.settings, svc.sessions, svc.redis, svc.clock, svc.audit, svc.log
    runs, ledger = RunBook(), found.ledger
    for run in found.open_runs:
        runs.adopt(run)
    days = TradingDays(
        sessions=sessions,
        clock=clock,
        equity=lambda: ledger.snapshot().equity,
        defaults=Limits(s.daily_target_pct, s.daily_loss_limit_pct),
        day=found.today,
    )
    store = HaltStore(str(s.redis_url))
    recorder = Recorder(sessions, loop)
    halts = HaltService(
        store=store, gate=HaltGate(redis), recorder=recorder, agent=svc.name, audit=audit, clock=clock, state=found.halt
    )
    params = Params(
        sessions=sessions, publish=svc.publish, audit=audit, notify=svc.notify, clock=clock, symbols=s.symbol_list
    )
    safety = RunSafety(runs, sessions=sessions, redis=redis, clock=clock, audit=audit, log=log)
    watchdogs = Watchdogs(
        redis=redis,
        halts=halts,
        runs=runs,
        ledger=ledger,
        db_up=db_up,
        db_outage_halt_s=s.db_outage_halt_s,
        roll_day=roll_day,
        flatten=flatten,
        log=log,
    )
    overview = Overview(
        settings=s,
        redis=redis,
        sessions=sessions,
        runs=runs,
        clock=clock,
        pnl=pnl,
        halt_state=lambda: halts.state,
        health=health,
        process=process,
    )
    return OrchestratorParts(found, runs, ledger, days, store, recorder, halts, params, safety, watchdogs, overview)
