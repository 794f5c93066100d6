"""The halt gate: what the executor and the risk manager read of the live flag.

The executor passes every order through `gate()` right before the adapter: one Lua script that,
atomically, refuses when halted (or when the flag is missing, e.g. after a Redis flush, until the
orchestrator restores it) and otherwise registers the order ids as in flight. The flag is set with
`store.SET_FLAG`, which reads the in-flight set in the same atomic step. Hence: once a halt has
answered, no order that was not listed in its answer can reach the adapter.
"""

from __future__ import annotations

from typing import Any

from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY
from cli_trading.halt.state import HaltState, from_redis

_GATE = """
local h = redis.call('HGET', KEYS[1], 'halted')
if not h then return 'unknown' end
local mode = redis.call('HGET', KEYS[1], 'mode') or 'halt'
if h == '1' and (ARGV[1] ~= 'reducing' or mode == 'halt') then return 'halted:' .. mode end
for i = 2, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return 'ok'
"""


class HaltGate:
    """On an agent's asyncio Redis client."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._gate = redis.register_script(_GATE)

    async def gate(self, order_ids: list[str], *, reducing: bool = False) -> str:
        """'ok' (ids registered in flight), 'unknown' or 'halted:<mode>'. With reducing=True
        the ids pass in reduce_only/flatten modes (the caller checked they shrink positions)."""
        res = await self._gate(keys=[HALT_KEY, INFLIGHT_KEY], args=["reducing" if reducing else "all", *order_ids])
        return res.decode() if isinstance(res, bytes) else str(res)

    async def read(self) -> HaltState | None:
        return from_redis(await self.redis.hgetall(HALT_KEY))
