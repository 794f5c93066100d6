"""Stream operations of the admin API (control/streams.py) over an in-memory stand-in for the few
Redis stream commands they use: unknown streams and groups are 404s, DLQ pages and their ids,
requeue only from a dead-letter stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.exceptions import ResponseError

from cli_trading.contracts import SUBSCRIPTIONS, Stream, dlq_of
from cli_trading.control import streams

DLQ = dlq_of(Stream.ORDERS)


class FakeStreams:
    """Streams as lists of (id, fields); ids are "<n>-0"."""

    def __init__(self) -> None:
        self.data: dict[str, list[tuple[bytes, dict[bytes, bytes]]]] = {}
        self.groups: dict[str, list[dict[str, Any]]] = {}
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq = 0

    def add(self, stream: str, fields: dict[str, Any]) -> str:
        self.seq += 1
        eid = f"{self.seq}-0"
        encoded = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}
        self.data.setdefault(stream, []).append((eid.encode(), encoded))
        return eid

    async def exists(self, key: str) -> int:
        return int(key in self.data)

    async def type(self, key: str) -> bytes:
        return b"stream" if key in self.data else b"none"

    async def xlen(self, key: str) -> int:
        return len(self.data.get(key, []))

    async def xrange(self, key: str, min: str = "-", max: str = "+", count: int | None = None) -> list[Any]:  # noqa: A002 - redis-py's names
        def seq(eid: bytes) -> int:
            return int(eid.split(b"-")[0])

        lo = 0 if min == "-" else int(min.lstrip("(").split("-")[0]) + (1 if min.startswith("(") else 0)
        hi = 1 << 62 if max == "+" else int(max.split("-")[0])
        rows = [(eid, f) for eid, f in self.data.get(key, []) if lo <= seq(eid) <= hi]
        return rows[:count] if count else rows

    async def xinfo_groups(self, key: str) -> list[dict[str, Any]]:
        return self.groups.get(key, [])

    async def xpending(self, key: str, group: str) -> dict[str, Any]:
        if (key, group) not in self.pending:
            raise ResponseError("NOGROUP No such key or consumer group")
        return self.pending[(key, group)]

    async def xpending_range(self, key: str, group: str, **_: Any) -> list[dict[str, Any]]:
        return [{"time_since_delivered": 1234}]

    def pipeline(self, transaction: bool = True) -> FakePipe:
        return FakePipe(self)


class FakePipe:
    def __init__(self, r: FakeStreams) -> None:
        self.r = r
        self.ops: list[tuple[str, str, Any]] = []

    async def __aenter__(self) -> FakePipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def xadd(self, stream: str, fields: dict[str, Any]) -> None:
        self.ops.append(("xadd", stream, fields))

    def xdel(self, stream: str, eid: str) -> None:
        self.ops.append(("xdel", stream, eid))

    async def execute(self) -> list[Any]:
        out: list[Any] = []
        for op, stream, arg in self.ops:
            if op == "xadd":
                out.append(self.r.add(stream, arg).encode())
            else:
                before = len(self.r.data[stream])
                self.r.data[stream] = [(e, f) for e, f in self.r.data[stream] if e != arg.encode()]
                out.append(before - len(self.r.data[stream]))
        return out


def dead(r: FakeStreams, n: int) -> list[str]:
    """`n` dead-lettered orders."""
    return [
        r.add(
            DLQ,
            {
                "data": orjson.dumps(
                    {
                        "originalStream": Stream.ORDERS,
                        "group": "exec",
                        "id": f"9{i}-0",
                        "payload": {"orderId": f"o{i}"},
                        "error": "boom",
                    }
                )
            },
        )
        for i in range(n)
    ]


async def test_an_unknown_stream_is_not_found() -> None:
    r = FakeStreams()
    with pytest.raises(streams.NotFound, match="unknown stream 'nope'"):
        await streams.dlq_entries(r, stream="nope")
    await streams.require_stream(r, DLQ)  # a known name, even before it exists


async def test_an_unknown_group_is_not_found() -> None:
    r = FakeStreams()
    with pytest.raises(streams.NotFound, match="no group 'ghost'"):
        await streams.pending(r, stream=Stream.ORDERS, group="ghost")


async def test_pending_summary_in_the_runbook_shape() -> None:
    r = FakeStreams()
    info = {"pending": 2, "min": b"1-0", "max": b"2-0", "consumers": [{"name": b"exec@a", "pending": 2}]}
    r.pending[(Stream.ORDERS, "exec")] = info
    got = await streams.pending(r, stream=Stream.ORDERS, group="exec")
    assert got["summary"] == [2, "1-0", "2-0", [["exec@a", 2]]]
    assert (got["count"], got["consumers"], got["oldestIdleMs"]) == (2, {"exec@a": 2}, 1234)


async def test_dlq_pages_carry_their_own_ids_and_the_next_page() -> None:
    r = FakeStreams()
    ids = dead(r, 3)
    r.add(DLQ, {"not": "json"})
    first = await streams.dlq_entries(r, stream=DLQ, count=2)
    assert [e["id"] for e in first["entries"]] == ids[:2]
    assert [e["originalId"] for e in first["entries"]] == ["90-0", "91-0"]  # the dead message's own id
    assert (first["length"], first["next"]) == (4, ids[2])
    rest = await streams.dlq_entries(r, stream=DLQ, count=5, start=first["next"])
    assert rest["next"] is None and rest["entries"][-1]["raw"] == {"not": "json"}  # shown as it is


async def test_requeue_moves_an_entry_back_to_its_stream() -> None:
    r = FakeStreams()
    ids = dead(r, 2)
    done = await streams.requeue_entries(r, dlq_stream=DLQ, entry_id=ids[0], all_=False)
    assert [d["id"] for d in done] == [ids[0]]
    assert await r.xlen(DLQ) == 1
    (_, fields), *_ = await r.xrange(Stream.ORDERS)
    assert orjson.loads(fields[b"data"]) == {"orderId": "o0"}
    everything = await streams.requeue_entries(r, dlq_stream=DLQ, entry_id=None, all_=True)
    assert [d["id"] for d in everything] == [ids[1]] and await r.xlen(DLQ) == 0


async def test_requeue_refuses_what_is_not_a_dead_letter() -> None:
    r = FakeStreams()
    r.add(Stream.ORDERS, {"data": b"{}"})
    with pytest.raises(ValueError, match="not a dead-letter stream"):
        await streams.requeue_entries(r, dlq_stream=Stream.ORDERS, entry_id=None, all_=True)
    dead(r, 1)
    with pytest.raises(streams.NotFound, match="no entry '77-0'"):
        await streams.requeue_entries(r, dlq_stream=DLQ, entry_id="77-0", all_=False)


async def test_overview_lists_every_stream_with_its_expected_groups() -> None:
    r = FakeStreams()
    r.add(Stream.ORDERS, {"data": b"{}"})
    r.groups[Stream.ORDERS] = [{"name": b"exec", "pending": 1, "consumers": 1, "lag": 0}]
    dead(r, 2)
    rows = {row["stream"]: row for row in await streams.overview(r)}
    assert set(rows) == {str(s) for s in SUBSCRIPTIONS}
    orders = rows[Stream.ORDERS]
    assert (orders["length"], orders["dlqLength"], orders["expectedGroups"]) == (1, 2, ["exec"])
    assert orders["groups"] == [{"name": "exec", "pending": 1, "consumers": 1, "lag": 0}]
    assert rows[Stream.BARS]["length"] == 0 and rows[Stream.BARS]["groups"] == []
