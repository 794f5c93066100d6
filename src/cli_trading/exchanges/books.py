"""The live desk's books: held by whoever moves an order between the exchange and the ledger, and
by reconciliation while it reads both sides (see desk.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class Books:
    """An asyncio lock that knows which task holds it, so that the holder can step out of it while
    it waits on something that needs no one else to wait (an order refused with a 429: nothing
    of it is at the exchange) and take it back after."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.owner: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        self.owner = asyncio.current_task()

    async def __aexit__(self, *exc: object) -> None:
        if self.owner is asyncio.current_task():  # not when taking it back was cancelled
            self.owner = None
            self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def stepped_out(self) -> AsyncIterator[None]:
        """Out of the lock meanwhile, when the current task holds it; else nothing changes."""
        if self.owner is None or self.owner is not asyncio.current_task():
            yield
            return
        self.owner = None
        self._lock.release()
        try:
            yield
        finally:
            await self._lock.acquire()
            self.owner = asyncio.current_task()
