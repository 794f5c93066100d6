"""What every agent's wiring function starts from: the settings and the services the lifecycle
hands the agent, in one frozen object (`Services`, made by `Agent.services()` once the bus and the
database are connected). Each agent's `wire` hook passes it to its wiring function, which builds
the agent's parts into a frozen dataclass of their own; `on_start` then only starts them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.config import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    name: str  # the agent's name (contracts.AGENTS)
    sessions: Callable[[], AsyncSession]  # a database session (an agent without a database: raises)
    redis: Any  # the bus's Redis client
    clock: Callable[[], datetime]
    audit: Callable[..., None]  # queue an audit event (agents/audit.py)
    notify: Callable[..., Awaitable[None]]  # an event on notify.events
    publish: Callable[[str, BaseModel], Awaitable[str]]  # a message on a stream
    log: Any
