"""The acceptance of a run when the database or Redis fails at the worst moment, on PostgreSQL and
SQLite, with the real orchestrator and Redis (issue 14's invariant):

- the acceptance commit lands but its answer is lost (the connection dies after the server
  committed): the client hears 503, so the run must never trade — it is marked failed once the
  database answers, and not sent to risk at the next start either; a retry with the same request
  id takes it over;
- the first message reaches Redis but its reply is lost (a timeout): a run whose answer came back
  meanwhile goes on (202), one whose answer did not is failed and never ordered, and a fill for a
  run recorded otherwise makes it `filled` (committed before the status is acknowledged): the
  run's outcome never contradicts the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli_trading.agents.orchestrator import Orchestrator, RunRefused
from cli_trading.bus import Delivery, Handled
from cli_trading.config import load_settings
from cli_trading.contracts import OrderMsg, Stream, order_id_for
from cli_trading.control.run_safety import REFUSED_KEY
from cli_trading.control.runs import REFUSED
from cli_trading.db import run_repo
from cli_trading.db.pgraw import Held

pytestmark = pytest.mark.integration


async def started(tmp_path: Path, db_url: str, redis_url: str) -> Orchestrator:
    orc = Orchestrator(load_settings(data_dir=tmp_path, redis_url=redis_url, database_url=db_url, admin_token="x" * 20))
    await orc.start()
    orc.parts.ledger.mark("BTC-USD", Decimal("100"))  # a market price: manual orders may be sized
    return orc


@pytest.fixture
async def orc(tmp_path: Path, db_url: str, redis_url: str) -> AsyncIterator[Orchestrator]:
    o = await started(tmp_path, db_url, redis_url)
    try:
        yield o
    finally:
        await o.stop()


class DyingDatabase:
    """Sessions of a database that dies during a commit: that transaction commits, then the
    connection is lost (the caller sees an error although the server has the rows: the
    ambiguous commit); every later session is refused until `back()`."""

    def __init__(self, real: Callable[[], Any]) -> None:
        self.real, self.state = real, "dying"

    def __call__(self) -> Any:
        if self.state == "up":
            return self.real()
        if self.state == "down":
            raise ConnectionRefusedError("database down (test)")
        self.state = "down"
        return self._committed_then_lost()

    @asynccontextmanager
    async def _committed_then_lost(self) -> AsyncIterator[Any]:
        async with self.real() as s:
            yield s
        raise ConnectionResetError("connection lost after the commit (test)")

    def back(self) -> None:
        self.state = "up"


class DyingHeld(Held):
    """The run book's own connection (PostgreSQL: its group commit goes there, not through a
    session) to the same dying database."""

    def __init__(self, real: Held, database: DyingDatabase) -> None:
        super().__init__(real.engine)
        self.real, self.database = real, database

    async def fetch_column(self, sql: str, args: Sequence[Any]) -> list[Any]:
        if self.database.state == "up":
            return await self.real.fetch_column(sql, args)
        if self.database.state == "down":
            raise ConnectionRefusedError("database down (test)")
        self.database.state = "down"
        await self.real.fetch_column(sql, args)
        raise ConnectionResetError("connection lost after the commit (test)")

    def close(self) -> None:
        self.real.close()


async def order(orc: Orchestrator, rid: str, qty: str = "0.01") -> Any:
    return await orc.start_run(
        symbol="BTC-USD", side="buy", qty=Decimal(qty), notional=None, request_id=rid, manual=True
    )


async def row(orc: Orchestrator, rid: str) -> Any:
    async with orc.sessions() as s:  # type: ignore[misc]  # the real sessions, whatever orc.session is
        return await run_repo.get_run(s, request_id=rid)


async def until(cond: Callable[[], Any], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await cond():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.05)


async def refused_with_commit_landed(orc: Orchestrator, rid: str) -> DyingDatabase:
    """POST /orchestrate/run's service call while the database dies during the commit."""
    dying = DyingDatabase(orc.session)
    orc.parts.safety.sessions = dying  # the acceptance commit is run safety's
    if orc.parts.runs.held is not None:  # PostgreSQL
        orc.parts.runs.held = DyingHeld(orc.parts.runs.held, dying)
    with pytest.raises(RunRefused) as info:
        await order(orc, rid)
    assert info.value.status == 503 and "database is unavailable" in info.value.error
    landed = await row(orc, rid)
    assert landed is not None and landed.outcome is None, "the fault must leave the run committed and open"
    return dying


async def risk_requests(orc: Orchestrator) -> int:
    return int(await orc.redis.xlen(Stream.RISK_REQUESTS))


async def test_a_refused_run_whose_commit_landed_is_failed_once_the_database_answers(orc: Orchestrator) -> None:
    database = await refused_with_commit_landed(orc, "lost-answer-1")
    assert await risk_requests(orc) == 0, "a refused run was sent to risk"
    assert (await orc.lookup_run("lost-answer-1")).outcome == "failed"  # type: ignore[union-attr]
    assert await orc.redis.hexists(REFUSED_KEY, "lost-answer-1")
    database.back()  # the flush loop writes the refusal

    async def failed() -> bool:
        r = await row(orc, "lost-answer-1")
        return r.outcome == "failed" and not await orc.redis.hexists(REFUSED_KEY, "lost-answer-1")

    await until(failed, "the refused run failed in `runs`, its reminder gone from Redis")
    assert (await row(orc, "lost-answer-1")).reason == REFUSED
    after = await orc.lookup_run("lost-answer-1")
    assert after is not None and after.outcome == "failed" and after.reason == REFUSED
    assert await risk_requests(orc) == 0


async def test_a_restart_before_the_database_answers_does_not_send_a_refused_run(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    orc = await started(tmp_path, db_url, redis_url)
    try:
        await refused_with_commit_landed(orc, "lost-answer-2")  # down until the orchestrator dies
    finally:
        await orc.stop()
    again = await started(tmp_path, db_url, redis_url)  # a new process: nothing of the first in memory
    try:
        r = await row(again, "lost-answer-2")
        assert (r.outcome, r.reason) == ("failed", REFUSED)
        assert await risk_requests(again) == 0, "the refused run was sent to risk at the start"
        assert not await again.redis.hexists(REFUSED_KEY, "lost-answer-2")
    finally:
        await again.stop()


async def test_a_retry_with_the_same_request_id_takes_a_refused_run_over(orc: Orchestrator) -> None:
    (await refused_with_commit_landed(orc, "lost-answer-3")).back()

    async def written() -> bool:
        return bool((await row(orc, "lost-answer-3")).outcome == "failed")

    await until(written, "the refusal written")
    run = await order(orc, "lost-answer-3", qty="0.02")  # the client's retry: accepted (202)
    assert run.outcome is None
    r = await row(orc, "lost-answer-3")
    assert (r.outcome, r.reason, r.qty) == (None, None, Decimal("0.02")), "the retry's row is the committed one"
    assert await risk_requests(orc) == 1
    assert not await orc.redis.hexists(REFUSED_KEY, "lost-answer-3")


async def test_a_retry_before_the_database_answers_is_not_failed_by_the_refusal(orc: Orchestrator) -> None:
    (await refused_with_commit_landed(orc, "lost-answer-4")).back()
    run = await order(orc, "lost-answer-4")  # retried at once: the refusal was not written yet
    assert run.outcome is None
    assert "lost-answer-4" not in orc.parts.runs.refused  # so no transaction will write it
    await orc.parts.runs.durable(orc.session)
    assert (await row(orc, "lost-answer-4")).outcome is None
    assert await risk_requests(orc) == 1


async def test_a_request_id_of_a_finished_run_no_longer_in_memory_is_refused_409(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    """A client reusing a request id after a restart: its run is in `runs`, not in memory. The
    new request is refused (409, naming the existing run); the finished row is left as it was
    and nothing is sent to risk."""
    orc = await started(tmp_path, db_url, redis_url)
    try:
        await order(orc, "reused-1")
        orc.parts.runs.finish(orc.parts.runs.get("reused-1"), "rejected", reason="test", now=orc.clock())  # type: ignore[arg-type]
        await orc.parts.runs.durable(orc.session)
    finally:
        await orc.stop()
    again = await started(tmp_path, db_url, redis_url)  # a new process: nothing of the first in memory
    try:
        sent = await risk_requests(again)
        with pytest.raises(RunRefused) as info:
            await order(again, "reused-1", qty="0.05")
        assert info.value.status == 409 and "already exists" in info.value.error
        assert info.value.run is not None and (info.value.run.outcome, info.value.run.reason) == ("rejected", "test")
        r = await row(again, "reused-1")
        assert (r.outcome, r.reason, r.qty) == ("rejected", "test", Decimal("0.01")), "the finished row was changed"
        assert await risk_requests(again) == sent, "the refused duplicate was sent to risk"
        assert "reused-1" not in again.parts.runs and not again.parts.runs.dirty
        run = await order(again, "fresh-1")  # the book still accepts other runs
        assert run.outcome is None and (await row(again, "fresh-1")) is not None
    finally:
        await again.stop()


def reply_lost(orc: Orchestrator, monkeypatch: pytest.MonkeyPatch, *, answered: bool) -> list[Handled]:
    """The risk request reaches Redis, but its reply times out; with `answered`, risk's approval
    comes back (and is handled) before the timeout surfaces. Returns what on_risk handled."""
    publish, handled = orc.bus.publish, []

    async def lossy(stream: str, payload: Any) -> str:
        await publish(stream, payload)
        if stream != Stream.RISK_REQUESTS:
            return ""
        if answered:
            approval = {"requestId": payload.requestId, "ok": True}
            handled.append(await orc.on_risk([Delivery(Stream.RISK_RESPONSES, "1-0", approval)]))
        raise RedisTimeoutError("Timeout reading from socket (test)")

    monkeypatch.setattr(orc.bus, "publish", lossy)
    return handled


def filled_status(rid: str) -> Delivery:
    payload = {
        "orderId": order_id_for(rid),
        "requestId": rid,
        "status": "filled",
        "symbol": "BTC-USD",
        "side": "buy",
        "qty": "0.01",
        "price": "100",
        "fee": "0.1",
    }
    return Delivery(Stream.STATUS, "1-0", payload)


async def test_a_run_answered_while_its_reply_was_lost_goes_on(
    orc: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = reply_lost(orc, monkeypatch, answered=True)
    run = await order(orc, "late-reply-1")  # 202: not refused, not failed
    assert run.outcome is None
    (result,) = handled
    orders = [m for s, m in result.emit if s == Stream.ORDERS]
    assert [m.orderId for m in orders if isinstance(m, OrderMsg)] == [order_id_for("late-reply-1")]
    await orc.on_status([filled_status("late-reply-1")])
    assert (run.outcome, run.reason) == ("filled", None)
    await orc.parts.runs.durable(orc.session)
    assert (await row(orc, "late-reply-1")).outcome == "filled"


async def test_a_failed_run_is_never_ordered_and_a_fill_for_it_makes_it_filled(
    orc: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply_lost(orc, monkeypatch, answered=False)
    with pytest.raises(RunRefused) as info:
        await order(orc, "late-reply-2")
    assert info.value.status == 503
    assert (await row(orc, "late-reply-2")).outcome == "failed"
    # risk's approval arrives after the run failed: no order goes out
    approval = {"requestId": "late-reply-2", "ok": True}
    result = await orc.on_risk([Delivery(Stream.RISK_RESPONSES, "2-0", approval)])
    assert result.emit == []
    # should a fill come all the same, the ledger has it and the run says so, committed at once
    held = orc.parts.ledger.qty_of("BTC-USD")
    await orc.on_status([filled_status("late-reply-2")])
    assert orc.parts.ledger.qty_of("BTC-USD") == held + Decimal("0.01")
    r = await row(orc, "late-reply-2")
    assert r.outcome == "filled" and r.reason.startswith("filled after being recorded failed"), r.reason
    got = await orc.lookup_run("late-reply-2")
    assert got is not None and got.outcome == "filled"
