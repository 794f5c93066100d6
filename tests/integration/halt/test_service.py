"""The halt service on the real servers, on PostgreSQL and SQLite alike: a halt sets the Redis
flag, lists the orders in flight and publishes its notification before it answers, then its
record follows (in order, on the agent's loop); a database that does not answer never holds the
halt up and gets the record once it is back; a restart never undoes a halt; the flag's store gives
up after its timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
import sqlalchemy as sa

from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, INFLIGHT_KEY
from cli_trading.halt.policy import FLATTEN_ROUNDS
from cli_trading.halt.state import HaltState, Limits, from_redis
from cli_trading.halt.store import HaltStore
from cli_trading.trading.ledger import FillRecord

pytestmark = pytest.mark.integration


@pytest.fixture
async def orc(tmp_path: Path, db_url: str, own_redis_url: str) -> AsyncIterator[Orchestrator]:
    r = aioredis.from_url(own_redis_url)
    await r.flushdb()
    o = Orchestrator(
        load_settings(data_dir=tmp_path, redis_url=own_redis_url, database_url=db_url, admin_token="x" * 20)
    )
    await o.start()
    try:
        yield o
    finally:
        await o.stop()
        await r.flushdb()
        await r.aclose()


async def halt_rows(o: Orchestrator) -> tuple[Any, list[Any]]:
    assert await o.parts.recorder.written()
    async with o.session() as s:
        state = (await s.execute(sa.text("SELECT halted, reason, halted_by FROM halt_state WHERE id = 1"))).first()
        query = "SELECT action, reason, actor, note, detail FROM halt_events ORDER BY id"
        events = (await s.execute(sa.text(query))).all()
    return state, list(events)


def _detail(row: Any) -> Any:
    return orjson.loads(row.detail) if isinstance(row.detail, str | bytes) else row.detail


async def test_halt_answers_once_the_flag_is_set_and_the_record_follows(orc: Orchestrator) -> None:
    r = aioredis.from_url(orc.settings.redis_url)
    await r.sadd(INFLIGHT_KEY, "ord-in-flight")
    result = orc.parts.halts.halt(reason="manual", mode="halt", actor="op-1234", source="127.0.0.1", note="3am")
    assert result["halted"] is True and result["inFlight"] == ["ord-in-flight"]
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"  # set before the answer
    notes = [orjson.loads(f[b"data"]) for _, f in await r.xrange("notify.events")]
    halt_note = next(n for n in notes if n["type"] == "halt.manual")
    assert halt_note["severity"] == "warning"  # the runbook's severity of a manual halt
    assert halt_note["context"]["agent"] == "orchestrator" and "3am" in halt_note["message"]
    state, events = await halt_rows(orc)
    assert state.halted and state.reason == "manual" and state.halted_by == "op-1234"
    assert events[-1].action == "halt" and events[-1].note == "3am"
    assert _detail(events[-1]) == {"inFlight": ["ord-in-flight"]}

    limits = orc.parts.days.current().limits
    orc.parts.halts.unhalt(
        actor="op-1234", source=None, note="checked", force=False, pnl_pct=orc.parts.days.percent(), limits=limits
    )
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"0"
    state, events = await halt_rows(orc)
    assert not state.halted
    assert events[-1].action == "unhalt" and _detail(events[-1])["previousReason"] == "manual"
    await r.aclose()


async def test_database_not_answering_keeps_the_flag_and_records_later(orc: Orchestrator) -> None:
    healthy = orc.parts.recorder.sessions
    orc.parts.recorder.sessions = _refusing_sessions  # the database is gone
    started = time.monotonic()
    result = orc.parts.halts.halt(reason="emergency_stop", mode="halt", actor="op", source=None, note=None)
    assert time.monotonic() - started < 0.5  # the answer does not wait for the database
    assert result["halted"] is True
    r = aioredis.from_url(orc.settings.redis_url)
    assert (await r.hgetall(HALT_KEY))[b"halted"] == b"1"
    deadline = time.monotonic() + 5
    while not (orc.parts.recorder.unsaved and orc.parts.recorder.pending[0].event["action"] == "halt"):
        assert time.monotonic() < deadline, "the record was not kept for a retry"
        await asyncio.sleep(0.01)
    orc.parts.recorder.sessions = healthy  # back: the recorder's retry (every second) writes it
    state, events = await halt_rows(orc)
    assert state.halted and state.reason == "emergency_stop"
    assert [e.action for e in events] == ["halt"]
    await r.aclose()


def _refusing_sessions() -> Any:
    raise ConnectionRefusedError("database down (test)")


async def _restart_with_live_flag(o: Orchestrator, state: HaltState) -> Orchestrator:
    """Stop the orchestrator, leave `state` as the live flag in Redis, start again."""
    await o.stop()
    r = aioredis.from_url(o.settings.redis_url)
    await r.delete(HALT_KEY)
    await r.hset(HALT_KEY, mapping=state.to_redis())
    await r.aclose()
    again = Orchestrator(o.settings)
    await again.start()
    return again


async def test_a_halt_only_redis_has_survives_a_restart(orc: Orchestrator) -> None:
    """A halt is answered before it is recorded: a crash in between leaves it in Redis only. A
    restart keeps it (and records it) instead of publishing the database's older state."""
    crash = HaltState(True, "emergency_stop", "halt", datetime.now(UTC), "tok:operator", "answered")
    o = await _restart_with_live_flag(orc, crash)
    try:
        assert o.parts.halts.state.halted and o.parts.halts.state.reason == "emergency_stop"
        live = from_redis(await aioredis.from_url(o.settings.redis_url).hgetall(HALT_KEY))
        assert live is not None and live.halted and live.reason == "emergency_stop"
        state, events = await halt_rows(o)
        assert state.halted and state.reason == "emergency_stop"
        assert [e.action for e in events] == ["recovered"]
    finally:
        await o.stop()


async def test_an_older_halt_in_redis_does_not_undo_a_recorded_unhalt(orc: Orchestrator) -> None:
    orc.parts.halts.halt(reason="manual", mode="halt", actor="tok:a", source=None, note=None)
    limits = Limits(Decimal(5), Decimal(3))
    orc.parts.halts.unhalt(actor="tok:a", source=None, note=None, force=True, pnl_pct=Decimal(0), limits=limits)
    assert await orc.parts.recorder.written()
    stale = HaltState(True, "manual", "halt", datetime.now(UTC) - timedelta(hours=1), "tok:a", None)
    o = await _restart_with_live_flag(orc, stale)  # e.g. Redis restored from an old snapshot
    try:
        assert not o.parts.halts.state.halted
        live = from_redis(await aioredis.from_url(o.settings.redis_url).hgetall(HALT_KEY))
        assert live is not None and not live.halted
        _, events = await halt_rows(o)
        assert [e.action for e in events] == ["halt", "unhalt"]
    finally:
        await o.stop()


async def test_reconcile_puts_a_lost_flag_back(orc: Orchestrator) -> None:
    orc.parts.halts.halt(reason="manual", mode="reduce_only", actor="tok:a", source=None, note=None)
    r = aioredis.from_url(orc.settings.redis_url)
    await r.delete(HALT_KEY)  # Redis flushed, say
    await orc.parts.halts.reconcile()
    live = from_redis(await r.hgetall(HALT_KEY))
    assert live is not None and live.halted and live.mode == "reduce_only"
    await r.aclose()


def test_store_talks_to_the_real_redis_and_reconnects(own_redis_url: str) -> None:
    store = HaltStore(own_redis_url)
    admin = redis.Redis.from_url(own_redis_url)
    admin.sadd(INFLIGHT_KEY, "ord-b", "ord-a")
    assert store.publish(HaltState()) == ["ord-a", "ord-b"]
    admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # drop the store's connection
    assert store.publish(HaltState(halted=True, reason="manual")) == ["ord-a", "ord-b"]  # a new one
    assert from_redis(admin.hgetall(HALT_KEY)) == HaltState(halted=True, reason="manual")
    admin.delete(HALT_KEY, INFLIGHT_KEY)
    admin.close()
    store.close()


def test_store_gives_up_after_its_timeout(free_port: int) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the kernel does), never answers
    port = silent.getsockname()[1]
    store = HaltStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        store.publish(HaltState())
    assert 0.25 <= time.monotonic() - started < 2
    silent.close()
    with pytest.raises(redis.ConnectionError):
        HaltStore(f"redis://127.0.0.1:{free_port}/0").publish(HaltState())  # nothing listens there


async def test_flatten_mode_keeps_closing_what_is_still_open(orc: Orchestrator) -> None:
    """A position left open after a flatten halt (an order in flight at the halt filled, or the
    first flatten sell was refused while another sell was in flight) gets a new flatten order once
    nothing is on its way; a few rounds at most."""
    watchdogs = [t for t in orc._tasks if t.get_coro().__qualname__ == "Watchdogs.run"]  # type: ignore[union-attr]
    assert len(watchdogs) == 1
    watchdogs[0].cancel()  # this test plays the watchdogs' once-a-second call itself
    keep_flattening = orc.parts.watchdogs.keep_flattening
    await orc.halt(reason="emergency_stop", mode="flatten", actor="tok:a", source=None, note=None)
    await keep_flattening()
    assert orc.parts.runs.in_flight() == 0  # flat: nothing to do
    orc.parts.ledger.apply(FillRecord("ord-late", "BTC-USD", "buy", Decimal("0.5"), Decimal("100"), Decimal("0")))
    for round_ in range(1, FLATTEN_ROUNDS + 1):
        await keep_flattening()
        open_runs = list(orc.parts.runs.active.values())
        assert [(r.symbol, r.side, r.qty) for r in open_runs] == [("BTC-USD", "sell", Decimal("0.5"))], round_
        assert open_runs[0].request_id.startswith("flatten-")
        await keep_flattening()
        assert orc.parts.runs.in_flight() == 1  # one at a time: it waits while one is on its way
        orc.parts.runs.active.clear()  # refused, say: the position is still open
    await keep_flattening()
    assert orc.parts.runs.in_flight() == 0  # the rounds are spent: left to the operator
