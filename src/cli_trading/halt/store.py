"""The one way to set the live halt flag, and to record a halt transition.

The flag is a Redis hash (`HALT_KEY`). `set_flag` replaces it with one Lua call that also returns
the orders in flight at that instant (the executor registers each order there, atomically with
reading the flag, before the adapter: `gate.py`). The halt's answer lists them; no other order can
reach the adapter afterwards. The halt service (halt, unhalt, reconcile, start-up restore) and the
backup restore (`ops/restore.py`) all set it through here.

The flag is written on a blocking redis-py connection with short timeouts, so that the halt
service can set it from any thread (the HTTP server's, the agent's event loop) and answer as soon
as it is set, without waiting for an event loop's turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.bus import STREAM_MAXLEN
from cli_trading.busops import encode
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY, NotifyEvent, Stream
from cli_trading.db import repo
from cli_trading.halt.state import HaltState

TIMEOUT_S = 0.5  # a Redis that does not answer holds a halt this long at most (the halt then fails)

SET_FLAG = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('SMEMBERS', KEYS[2])
"""


def set_flag(client: Any, state: HaltState) -> Any:
    """Queue (on a pipeline) or run the flag's write; its reply is the in-flight order ids."""
    args = [x for kv in state.to_redis().items() for x in kv]
    return client.eval(SET_FLAG, 2, HALT_KEY, INFLIGHT_KEY, *args)


class HaltStore:
    """The flag on a connection of its own (blocking, thread-safe through redis-py's pool)."""

    def __init__(self, redis_url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def publish(self, state: HaltState, notice: NotifyEvent | None = None) -> list[str]:
        """Set the flag (and publish its notification in the same round trip); returns the orders
        in flight at that instant, sorted."""
        pipe = self.redis.pipeline(transaction=False)
        set_flag(pipe, state)
        if notice is not None:
            pipe.xadd(Stream.NOTIFY, {"data": encode(notice)}, maxlen=STREAM_MAXLEN, approximate=True)
        members = pipe.execute()[0]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def warm_up(self) -> None:
        """Open the connection now, so that the first halt does not pay for it."""
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()


async def record(session: AsyncSession, *, state: HaltState, event: dict[str, Any], now: datetime) -> int:
    """The state and its transition, in the caller's transaction; returns the event's id."""
    return await repo.save_halt(session, state=state, event=event, now=now)
