"""The halt writer on the real servers: a halt sets the Redis flag, lists the orders in flight,
publishes its notification and records state and event in PostgreSQL, without letting the event
loop run anything else meanwhile; when the database does not answer, the flag still holds and
the reconcile loop saves the state later."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from cli_trading.agents.orchestrator import FLATTEN_ROUNDS, Orchestrator
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY
from cli_trading.control.halt_writer import FlagLine, HaltWriter
from cli_trading.trading.halt import HaltState, Limits, from_redis
from cli_trading.trading.ledger import FillRecord

pytestmark = pytest.mark.integration
REDIS = "redis://127.0.0.1:6379/10"


@pytest.fixture
async def orc(tmp_path: Path, own_pg_database: str) -> AsyncIterator[Orchestrator]:
    r = aioredis.from_url(REDIS)
    await r.flushdb()
    o = Orchestrator(
        load_settings(data_dir=tmp_path, redis_url=REDIS, database_url=own_pg_database, admin_token="x" * 20)
    )
    await o.start()
    try:
        yield o
    finally:
        await o.stop()
        await r.flushdb()
        await r.aclose()


async def halt_rows(pg_url: str) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    conn = await asyncpg.connect(pg_url)
    try:
        state = await conn.fetchrow("SELECT halted, reason, halted_by FROM halt_state WHERE id = 1")
        events = await conn.fetch("SELECT action, reason, actor, note, detail FROM halt_events ORDER BY id")
        return state, events
    finally:
        await conn.close()


async def test_halt_is_written_without_yielding_to_the_loop(orc: Orchestrator, own_pg_database: str) -> None:
    assert orc.halt_writer.writes_database
    r = aioredis.from_url(REDIS)
    await r.sadd(INFLIGHT_KEY, "ord-in-flight")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    before = ticks
    result = await orc.halts.halt(reason="manual", mode="halt", actor="op-1234", source="127.0.0.1", note="3am")
    assert ticks == before  # nothing else ran on the loop while the halt was being put in place
    t.cancel()

    assert result["halted"] is True and result["inFlight"] == ["ord-in-flight"]
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"
    notes = [orjson.loads(f[b"data"]) for _, f in await r.xrange("notify.events")]
    halt_note = next(n for n in notes if n["type"] == "halt.manual")
    assert halt_note["severity"] == "warning"  # the runbook's severity of a manual halt
    assert halt_note["context"]["agent"] == "orchestrator" and "3am" in halt_note["message"]
    state, events = await halt_rows(own_pg_database)
    assert state["halted"] is True and state["reason"] == "manual" and state["halted_by"] == "op-1234"
    assert events[-1]["action"] == "halt" and events[-1]["note"] == "3am"
    assert orjson.loads(events[-1]["detail"]) == {"inFlight": ["ord-in-flight"]}
    assert orc.halts.unsaved is False

    await orc.halts.unhalt(
        actor="op-1234", source=None, note="checked", force=False, pnl_pct=orc.pnl_pct(), limits=orc.day.limits
    )
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"0"
    state, events = await halt_rows(own_pg_database)
    assert state["halted"] is False
    assert events[-1]["action"] == "unhalt" and orjson.loads(events[-1]["detail"])["previousReason"] == "manual"
    await r.aclose()


async def test_database_not_answering_keeps_the_flag_and_saves_later(orc: Orchestrator, own_pg_database: str) -> None:
    # the writer's connection points at a port where nothing listens: the durable write fails fast
    orc.halts.writer = HaltWriter(redis_url=REDIS, db_url="postgresql+asyncpg://postgres@127.0.0.1:9/none")
    result = await orc.halts.halt(reason="emergency_stop", mode="halt", actor="op", source=None, note=None)
    assert result["halted"] is True
    r = aioredis.from_url(REDIS)
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"  # the guarantee does not wait for the database
    assert orc.halts.unsaved is True
    state, _ = await halt_rows(own_pg_database)
    assert state is None or state["halted"] is False

    await orc.halts.reconcile()  # what the watchdog does every second, on the agent's own engine
    assert orc.halts.unsaved is False
    state, events = await halt_rows(own_pg_database)
    assert state["halted"] is True and state["reason"] == "emergency_stop"
    assert events[-1]["action"] == "resync"
    await r.aclose()


def test_a_database_the_sync_driver_cannot_reach_falls_back_to_the_async_session() -> None:
    w = HaltWriter(redis_url=REDIS, db_url="postgresql+asyncpg://postgres@127.0.0.1:9/none")
    assert w.writes_database
    w.warm_up()  # does not raise: the orchestrator starts all the same
    assert not w.writes_database
    w.close()


def test_sqlite_is_left_to_the_async_session(tmp_path: Path) -> None:
    w = HaltWriter(redis_url=REDIS, db_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    assert not w.writes_database
    w.close()


async def _restart_with_live_flag(o: Orchestrator, state: HaltState) -> Orchestrator:
    """Stop the orchestrator, leave `state` as the live flag in Redis, start again."""
    await o.stop()
    r = aioredis.from_url(REDIS)
    await r.delete(HALT_KEY)
    await r.hset(HALT_KEY, mapping=state.to_redis())
    await r.aclose()
    again = Orchestrator(o.settings)
    await again.start()
    return again


async def test_a_halt_only_redis_has_survives_a_restart(orc: Orchestrator, own_pg_database: str) -> None:
    """The halt door answers before it records: a crash in between leaves the halt in Redis only.
    A restart keeps it (and records it) instead of publishing the database's older state."""
    crash = HaltState(True, "emergency_stop", "halt", datetime.now(UTC), "tok:operator", "door answered")
    o = await _restart_with_live_flag(orc, crash)
    try:
        assert o.halts.state.halted and o.halts.state.reason == "emergency_stop"
        live = from_redis(await aioredis.from_url(REDIS).hgetall(HALT_KEY))
        assert live is not None and live.halted and live.reason == "emergency_stop"
        state, events = await halt_rows(own_pg_database)
        assert state["halted"] and state["reason"] == "emergency_stop"
        assert [e["action"] for e in events] == ["recovered"]
    finally:
        await o.stop()


async def test_an_older_halt_in_redis_does_not_undo_a_recorded_unhalt(orc: Orchestrator, own_pg_database: str) -> None:
    await orc.halts.halt(reason="manual", mode="halt", actor="tok:a", source=None, note=None)
    await orc.halts.unhalt(
        actor="tok:a", source=None, note=None, force=True, pnl_pct=Decimal(0), limits=Limits(Decimal(5), Decimal(3))
    )
    stale = HaltState(True, "manual", "halt", datetime.now(UTC) - timedelta(hours=1), "tok:a", None)
    o = await _restart_with_live_flag(orc, stale)  # e.g. Redis restored from an old snapshot
    try:
        assert not o.halts.state.halted
        live = from_redis(await aioredis.from_url(REDIS).hgetall(HALT_KEY))
        assert live is not None and not live.halted
        _, events = await halt_rows(own_pg_database)
        assert [e["action"] for e in events] == ["halt", "unhalt"]
    finally:
        await o.stop()


def test_flag_line_talks_to_the_real_redis_and_reconnects() -> None:
    line = FlagLine.for_url("redis://127.0.0.1:6379/10")
    assert line is not None
    assert line.call([("SET", "ct:flagline", "1"), ("GET", "ct:flagline")]) == [b"OK", b"1"]
    assert line.sock is not None
    host, port = line.sock.getsockname()[:2]
    admin = redis.Redis.from_url("redis://127.0.0.1:6379/10")
    assert admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}") in (b"OK", "OK", True)
    admin.close()
    with pytest.raises(redis.ConnectionError):
        line.call([("GET", "ct:flagline")])  # finds its connection gone: closed, reported
    assert line.call([("GET", "ct:flagline"), ("DEL", "ct:flagline")]) == [b"1", 1]  # a new one, same db
    line.close()


def test_flag_line_gives_up_after_its_timeout_and_knows_its_limits() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the kernel does), never answers
    line = FlagLine(silent.getsockname(), [])
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        line.call([("PING",)])
    assert 0.9 <= time.monotonic() - started < 3
    silent.close()
    with pytest.raises(redis.ConnectionError):
        FlagLine(("127.0.0.1", 1), []).call([("PING",)])  # nothing listens there
    assert FlagLine.for_url("rediss://127.0.0.1:6380/0") is None
    assert FlagLine.for_url("unix:///run/redis.sock") is None
    auth = FlagLine.for_url("redis://user:secret@10.0.0.1:6390/3")
    assert auth is not None and auth.addr == ("10.0.0.1", 6390)
    assert auth.setup == [("AUTH", "user", "secret"), ("SELECT", 3)]


async def test_flatten_mode_keeps_closing_what_is_still_open(orc: Orchestrator) -> None:
    """A position left open after a flatten halt (an order in flight at the halt filled, or the
    first flatten sell was refused while another sell was in flight) gets a new flatten order once
    nothing is on its way; a few rounds at most."""
    watchdogs = [t for t in orc._tasks if t.get_coro().__qualname__ == "Watchdogs.run"]  # type: ignore[union-attr]
    assert len(watchdogs) == 1
    watchdogs[0].cancel()  # this test plays the watchdogs' once-a-second call itself
    await orc.halts.halt(reason="emergency_stop", mode="flatten", actor="tok:a", source=None, note=None)
    await orc.keep_flattening()
    assert orc.runs.in_flight() == 0  # flat: nothing to do
    orc.ledger.apply(FillRecord("ord-late", "BTC-USD", "buy", Decimal("0.5"), Decimal("100"), Decimal("0")))
    for round_ in range(1, FLATTEN_ROUNDS + 1):
        await orc.keep_flattening()
        open_runs = list(orc.runs.active.values())
        assert [(r.symbol, r.side, r.qty) for r in open_runs] == [("BTC-USD", "sell", Decimal("0.5"))], round_
        assert open_runs[0].request_id.startswith("flatten-")
        await orc.keep_flattening()
        assert orc.runs.in_flight() == 1  # one at a time: it waits while one is on its way
        orc.runs.active.clear()  # refused, say: the position is still open
    await orc.keep_flattening()
    assert orc.runs.in_flight() == 0  # the rounds are spent: left to the operator
