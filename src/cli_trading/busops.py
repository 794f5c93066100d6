"""The bus's Redis plumbing: connections that pack commands in C, and a batch's writes (acks,
idempotency keys, outputs, DLQ entries) run atomically as one Lua call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.connection import HiredisRespSerializer


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def encode(payload: BaseModel | dict[str, Any]) -> bytes:
    """A stream message's payload as JSON bytes (Decimals as strings, as the contracts say)."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", exclude_none=True)
    return orjson.dumps(payload, default=_default)


class _HiredisPacking(aioredis.Connection):
    """redis-py's asyncio connection packs commands in Python, copying the buffer for every
    argument; its sync client uses hiredis. A batch's acks, keys and outputs travel as one large
    EVAL, where packing in C costs a quarter as much. Same bytes on the wire."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py runs every send as `wait_for(write and drain, socket_timeout)`: a task and a
        timer per command, several per message batch in every agent. A send the socket takes at
        once has nothing to wait for; only one it could not take all of waits for the drain, with
        redis-py's timeout and errors (the rest of the command is written by the transport)."""
        if not isinstance(command, list) or not self.is_connected:
            return await super().send_packed_command(command, check_health)
        if check_health:
            await self.check_health()
        writer = self._writer  # after the health check, which may have connected again
        if writer is None or writer.transport.is_closing():
            return await super().send_packed_command(command, check_health=False)
        try:
            writer.writelines(command)
        except BaseException:
            await self.disconnect(nowait=True)
            raise
        if writer.transport.get_write_buffer_size():
            await super().send_packed_command([], check_health=False)  # the drain, under the timeout


def connect(url: str, **kw: Any) -> aioredis.Redis:
    # rediss:// and unix:// URLs pick their own connection class (the Python packer)
    return aioredis.from_url(
        url, socket_connect_timeout=2, health_check_interval=15, connection_class=_HiredisPacking, **kw
    )


# Runs a list of commands atomically, like MULTI/EXEC but as one command, so that it can share a
# round trip with the next blocking XREADGROUP (MULTI cannot hold a blocking read). ARGV holds
# [n, command, arg…] groups; keys travel in ARGV, which a single (non-cluster) Redis allows.
ATOMIC = """
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class Ops:
    """The writes that settle a batch (acks, idempotency keys, outputs, DLQ entries), recorded
    to be run atomically by `ATOMIC`."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def _cmd(self, *cmd: Any) -> None:
        self.args += [len(cmd), *cmd]

    def xack(self, stream: str, group: str, *ids: str) -> None:
        self._cmd("XACK", stream, group, *ids)

    def xadd(self, stream: str, data: bytes) -> None:
        self._cmd("XADD", stream, "*", "data", data)

    def set(self, key: str, ttl_s: int) -> None:
        self._cmd("SET", key, 1, "EX", ttl_s)

    def hdel(self, key: str, *fields: str) -> None:
        self._cmd("HDEL", key, *fields)

    def srem(self, key: str, *members: str) -> None:
        self._cmd("SREM", key, *members)
