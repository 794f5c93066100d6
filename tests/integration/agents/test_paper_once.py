"""No order reaches the paper engine twice, on PostgreSQL and SQLite, with the real executor and
Redis (issue 14's invariant, point 2, in paper mode): the engine is called only for the order
ids its transaction claims, each once, and its record (`received`, what /admin/exec/adapter
shows) follows that transaction's commit. So a redelivered order, the same order twice in one
batch, a transaction that dies before its commit (what a kill -9 of the executor does), a new
executor after it, and a commit that lands although it was reported failed each leave one
order row, one fill and at most one entry in the record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from cli_trading.agents.executor import TradeExecutor
from cli_trading.bus import Delivery
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, Stream
from cli_trading.db import order_pg, repo
from cli_trading.halt.state import HaltState

pytestmark = pytest.mark.integration


@pytest.fixture
async def executors(tmp_path: Path, db_url: str, redis_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Starts executors on the same database and Redis (a second one: the process after a
    kill -9 of the first); not halted."""
    r = aioredis.from_url(redis_url)
    await r.hset(HALT_KEY, mapping=HaltState().to_redis())
    await r.aclose()
    started: list[TradeExecutor] = []
    settings = load_settings(data_dir=tmp_path, redis_url=redis_url, database_url=db_url, admin_token="x" * 20)

    async def start() -> TradeExecutor:
        ex = TradeExecutor(settings)
        await ex.start()
        started.append(ex)
        return ex

    try:
        yield start
    finally:
        for ex in started:
            await ex.stop()


def order(rid: str, entry: str) -> Delivery:
    payload = {
        "orderId": f"ord-{rid}",
        "requestId": rid,
        "symbol": "BTC-USD",
        "side": "buy",
        "qty": "0.01",
        "price": "100",
    }
    return Delivery(Stream.ORDERS, entry, payload)


async def statuses(ex: TradeExecutor, batch: list[Delivery]) -> list[tuple[str, str]]:
    handled = await ex.handle_orders(batch)
    assert list(handled.outcomes) == [None] * len(batch)
    return [(m.orderId, m.status) for _, m in handled.emit]  # type: ignore[attr-defined]  # StatusMsg


def record(ex: TradeExecutor) -> list[str]:
    return [r.order_id for r in ex.parts.adapter.received]


async def ledger(ex: TradeExecutor) -> tuple[list[tuple[str, str]], list[str]]:
    async with ex.sessions() as s:  # type: ignore[misc]  # the real sessions
        orders = (await s.execute(sa.text("SELECT order_id, status FROM orders ORDER BY order_id"))).all()
        fills = (await s.execute(sa.text("SELECT order_id FROM fills ORDER BY order_id"))).all()
    return [tuple(o) for o in orders], [f[0] for f in fills]


async def test_a_redelivered_order_and_a_repeat_in_one_batch_reach_the_engine_once(
    executors: Callable[[], Any],
) -> None:
    ex = await executors()
    cash = ex.parts.paper.ledger.cash
    assert await statuses(ex, [order("a", "1-0")]) == [("ord-a", "filled")]
    assert await statuses(ex, [order("a", "2-0")]) == [("ord-a", "filled")]  # redelivered: from the ledger
    # the same order emitted twice, both in one batch, with another order between
    both = await statuses(ex, [order("b", "3-0"), order("c", "4-0"), order("b", "5-0")])
    assert sorted(both) == [("ord-b", "filled"), ("ord-b", "filled"), ("ord-c", "filled")]
    assert record(ex) == ["ord-a", "ord-b", "ord-c"]
    filled = [("ord-a", "filled"), ("ord-b", "filled"), ("ord-c", "filled")]
    assert await ledger(ex) == (filled, ["ord-a", "ord-b", "ord-c"])
    assert ex.parts.paper.ledger.qty_of("BTC-USD") == Decimal("0.03")
    assert ex.parts.paper.ledger.cash < cash - Decimal("3")  # three fills of 1 each, and their fees: not four


async def test_a_transaction_that_dies_before_its_commit_leaves_nothing_and_the_next_executor_fills_once(
    executors: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = await executors()
    settles = repo.settle_orders, order_pg.settle_orders

    async def dying(*args: Any, **kwargs: Any) -> None:  # the engine has filled; the connection dies
        raise ConnectionResetError("connection lost before the commit (test)")

    monkeypatch.setattr(repo, "settle_orders", dying)  # SQLite's statements
    monkeypatch.setattr(order_pg, "settle_orders", dying)  # PostgreSQL's, straight to asyncpg
    with pytest.raises(ConnectionResetError):
        await ex.handle_orders([order("d", "1-0")])
    assert record(ex) == [], "rolled back: the order did not reach the engine for good"
    assert await ledger(ex) == ([], [])
    monkeypatch.setattr(repo, "settle_orders", settles[0])
    monkeypatch.setattr(order_pg, "settle_orders", settles[1])
    # the executor is killed (its memory is gone); the next one gets the redelivered order
    again = await executors()
    assert await statuses(again, [order("d", "1-0")]) == [("ord-d", "filled")]
    assert record(again) == ["ord-d"]
    assert await ledger(again) == ([("ord-d", "filled")], ["ord-d"])
    # and the first one, had it lived on, answers the redelivery from the ledger, sending nothing
    assert await statuses(ex, [order("d", "1-0")]) == [("ord-d", "filled")]
    assert record(ex) == []
    assert ex.parts.paper.ledger.qty_of("BTC-USD") == Decimal("0.01")  # its paper account rebuilt


async def test_a_commit_reported_failed_that_landed_is_recorded_once(
    executors: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = await executors()
    # the batch's transaction: PostgreSQL's on the connection the executor holds, SQLite's in a session
    owner, name = (ex.held, "transaction") if ex.held is not None else (ex, "session")
    real = getattr(owner, name)

    @asynccontextmanager
    async def committed_then_lost() -> AsyncIterator[Any]:
        async with real() as s:
            yield s
        raise ConnectionResetError("connection lost after the commit (test)")

    monkeypatch.setattr(owner, name, committed_then_lost)
    with pytest.raises(ConnectionResetError):
        await ex.handle_orders([order("e", "1-0")])
    monkeypatch.setattr(owner, name, real)
    assert record(ex) == []  # not known yet whether it landed
    assert await statuses(ex, [order("e", "1-0")]) == [("ord-e", "filled")]  # redelivered: from the ledger
    assert record(ex) == ["ord-e"]  # it had landed: it did reach the engine, once
    assert await ledger(ex) == ([("ord-e", "filled")], ["ord-e"])
    assert ex.parts.paper.ledger.qty_of("BTC-USD") == Decimal("0.01")
