"""The bus's Redis plumbing: connections that pack commands in C, a batch's writes (acks,
idempotency keys, outputs, DLQ entries) run atomically as one Lua call, and the read that runs
them, reads the next batch and looks up its idempotency keys in one round trip, blocking or not."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.connection import HiredisRespSerializer
from redis.exceptions import ResponseError


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


def _run_writes(first: int) -> str:
    """The Lua that runs a batch's writes: the [n, command, arg…] groups of ARGV from ARGV[first]
    on (ATOMIC's and READ's opening). A SET_ALL group ([n, 'SET_ALL', prefix, ttl, key…], see
    `Ops.set`) sets each prefix..key to 1 for ttl seconds: one short argument per idempotency key
    where a SET group took six."""
    return f"""
local i = {first}
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'SET_ALL' then
    local p, ttl = ARGV[i + 2], ARGV[i + 3]
    for j = i + 4, i + n do redis.call('SET', p .. ARGV[j], 1, 'EX', ttl) end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
"""


# Runs a list of commands atomically, like MULTI/EXEC but as one command, so that it can share a
# round trip with the next blocking XREADGROUP (MULTI cannot hold a blocking read). ARGV holds
# [n, command, arg…] groups; keys travel in ARGV, which a single (non-cluster) Redis allows.
ATOMIC = _run_writes(1) + "return 1\n"


# A consumer's read (Consumer._read): the last batch's writes (as ATOMIC, from ARGV[8] on), then a
# non-blocking XREADGROUP, and for each entry whether its idempotency key is set (the prefix
# ARGV[6] and the payload's string field ARGV[7]; none: no key) — one round trip where a read and a
# separate MGET of the keys took two. ARGV: stream, group, consumer, count, from id, key prefix,
# key field. Returns {entries, flags, top}: entries as XREADGROUP gives them ({id, {field, value,
# ...} or false}); flags 1 = seen, 0 = not, 2 = not known (a payload Lua's JSON decoder refused,
# to be looked up by the caller); top, for a read of new entries ('>') that found fewer than
# count, the id of the stream's last entry (every entry up to it is delivered to the group: a
# blocking wait for entries after it cannot miss one, see read_blocking), else ''.
READ = (
    _run_writes(8)
    + """
local res = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', ARGV[1], ARGV[5])
local entries, flags = res and res[1][2] or {}, {}
for j, e in ipairs(entries) do
  flags[j] = 0
  local fields = e[2]
  if ARGV[7] ~= '' and fields then
    for f = 1, #fields, 2 do
      if fields[f] == 'data' then
        local ok, p = pcall(cjson.decode, fields[f + 1])
        if not ok then
          flags[j] = 2
        else
          local k = type(p) == 'table' and p[ARGV[7]]
          if type(k) == 'string' and k ~= '' and redis.call('EXISTS', ARGV[6] .. k) == 1 then flags[j] = 1 end
        end
      end
    end
  end
end
local top = ''
if ARGV[5] == '>' and #entries < tonumber(ARGV[4]) then
  if #entries > 0 then
    top = entries[#entries][1]  -- fewer than count: it read up to the stream's end
  else
    local last = redis.call('XREVRANGE', ARGV[1], '+', '-', 'COUNT', 1)
    top = last[1] and last[1][1] or '0-0'
  end
end
return {entries, flags, top}
"""
)


Entry = tuple[bytes, dict[bytes, bytes] | None]  # (id, fields; None when trimmed while pending)
SEEN, UNKNOWN = 1, 2  # READ's flags (0: not seen)


def key_of(payload: dict[str, Any], field: str | None) -> str | None:
    """A message's stable key: its `field`, a non-empty string (as READ reads it)."""
    k = payload.get(field) if field else None
    return k if isinstance(k, str) and k else None


Read = tuple[list[Entry], list[int], bytes | None]  # entries, READ's flags, top (None: not known)


async def read(reader: Any, args: tuple[Any, ...], ops: Ops) -> Read:
    """READ with its arguments and the writes to run first: the entries (fields as a dict, as
    redis-py's XREADGROUP gives them), a flag for each, and the top it reports."""
    return _read_reply(await reader.execute_command("EVAL", READ, 0, *args, *ops.args))


def _read_reply(res: Any) -> Read:
    entries: list[Entry] = [(eid, dict(zip(f[::2], f[1::2], strict=True)) if f else None) for eid, f in res[0]]
    return entries, [int(x) for x in res[1]], res[2] or None


async def read_blocking(reader: Any, ops: Ops, args: tuple[Any, ...], top: bytes, block_ms: int) -> Read:
    """READ (`args` as `read`'s) once an entry after `top` is in the stream, or after `block_ms`:
    the writes (ATOMIC), `XREAD BLOCK` on the stream from `top`, then READ, sent at once on a
    connection of the reader's pool — Redis runs a client's next command only once its blocking
    one has returned, so READ reads what woke it, its keys looked up, in the same round trip
    (XREADGROUP BLOCK cannot run in Lua, and its entries needed an MGET of their keys after it).
    XREAD takes nothing from the group; an entry after `top` already delivered (to another
    consumer of the group) wakes it for nothing, and READ then reports the new top."""
    cmds: list[tuple[Any, ...]] = [("EVAL", ATOMIC, 0, *ops.args)] if ops else []
    cmds.append(("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", args[0], top))
    cmds.append(("EVAL", READ, 0, *args))
    replies = await pipelined(reader, cmds)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return _read_reply(replies[-1])


async def pipelined(redis: Any, cmds: list[tuple[Any, ...]]) -> list[Any]:
    """The raw replies of `cmds`, sent at once on a connection of the client's pool, a command's
    error (ResponseError) in its place: redis-py's pipeline without its per-call bookkeeping (its
    command stack, reply callbacks, fieldset preparation, timing), which costs more than the
    round trip's own work for a few commands. Every reply is read, an error's too, so the
    connection stays in step; a lost connection is retried as redis-py retries a pipeline."""
    pool = redis.connection_pool
    conn = await pool.get_connection()

    async def send_and_read() -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(cmds))
        replies: list[Any] = []
        for _ in cmds:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies

    async def lost(_: Exception) -> None:
        await conn.disconnect()

    try:
        return await conn.retry.call_with_retry(send_and_read, lost)
    except BaseException:
        await conn.disconnect(nowait=True)  # cancelled mid-read (stopping) or gone: not reused
        raise
    finally:
        await pool.release(conn)


async def count_failures(redis: Any, key: str, ids: list[str]) -> list[int]:
    """One more failure for each message id (a hash field each); their counts now."""
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.hincrby(key, i, 1)
        return [int(n) for n in await pipe.execute()]


class Ops:
    """The writes that settle a batch (acks, idempotency keys, outputs, DLQ entries), recorded
    to be run atomically by `ATOMIC`. The acks of one stream and group go in one XACK, the keys of
    one prefix and lifetime in one SET_ALL group, both after the other writes: a batch costs two
    commands there, not two for each message."""

    def __init__(self) -> None:
        self._writes: list[Any] = []
        self._acks: dict[tuple[str, str], list[str]] = {}
        self._keys: dict[tuple[str, int], list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._writes or self._acks or self._keys)

    @property
    def args(self) -> list[Any]:
        """ATOMIC's ARGV: [n, command, arg…] groups."""
        out = list(self._writes)
        for (stream, group), ids in self._acks.items():
            out += [len(ids) + 3, "XACK", stream, group, *ids]
        for (prefix, ttl_s), keys in self._keys.items():
            out += [len(keys) + 3, "SET_ALL", prefix, ttl_s, *keys]
        return out

    def _cmd(self, *cmd: Any) -> None:
        self._writes += [len(cmd), *cmd]

    def xack(self, stream: str, group: str, *ids: str) -> None:
        self._acks.setdefault((stream, group), []).extend(ids)

    def set(self, prefix: str, key: str, ttl_s: int) -> None:
        """SET prefix+key 1 EX ttl_s (an idempotency key)."""
        self._keys.setdefault((prefix, ttl_s), []).append(key)

    def xadd(self, stream: str, data: bytes) -> None:
        self._cmd("XADD", stream, "*", "data", data)

    def hdel(self, key: str, *fields: str) -> None:
        self._cmd("HDEL", key, *fields)

    def srem(self, key: str, *members: str) -> None:
        self._cmd("SREM", key, *members)
