"""An agent's process: logging, the garbage collector, its priority, its event loop."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import TYPE_CHECKING

import uvloop

from cli_trading.config import Settings
from cli_trading.logs import configure

if TYPE_CHECKING:
    from cli_trading.agents.base import Agent


def run_agent(agent_cls: type[Agent], settings: Settings) -> int:
    configure(agent_cls.name, settings.logs_path, level=settings.log_level, stderr=settings.log_stderr)
    tune_gc()
    lower_priority(settings.agent_nice)
    # uvloop's loop handed to the runner (uvloop.install(), a global policy, is deprecated)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(agent_cls(settings).serve())


def lower_priority(nice: int) -> None:
    """Run at `AGENT_NICE` (before any thread starts, so that all inherit it): on a machine the
    agents saturate, an operator's shell and curl, and the Redis and PostgreSQL the agents wait
    on, get a core first. Only ever raised (no privilege needed); nothing asks for more."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.nice(nice - current)


def tune_gc() -> None:
    """An agent allocates a few objects per message and keeps long-lived state (ledger, runs);
    with the default thresholds the collector ran often enough to take ~12% of the orchestrator
    under load. Collect young objects less often; full collections stay automatic."""
    gc.set_threshold(50_000, 20, 20)
