"""The database layer against REAL PostgreSQL (a fresh database) and a SQLite file: every test
runs on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import inspect, text

from cli_trading.db import engine as dbengine
from cli_trading.db import repo, run_repo
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord

if TYPE_CHECKING:
    from tests.integration.conftest import Database

pytestmark = pytest.mark.integration

D = Decimal
T0 = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)
TABLES = {
    "audit_events", "orders", "fills", "pnl_days", "halt_events", "halt_state", "incidents", "incident_events",
    "notifications", "params", "runs", "marks",
}


def order_row(oid: str, *, side: str = "buy", qty: str = "0.5", ts: datetime = T0) -> dict:
    return {
        "order_id": oid, "request_id": oid.removeprefix("ord-"), "created_at": ts, "symbol": "BTC-USD",
        "side": side, "qty": D(qty), "type": "market", "status": "pending", "updated_at": ts,
    }


def fill_row(oid: str, *, side: str = "buy", qty: str = "0.5", price: str = "20000", fee: str = "1",
             ts: datetime = T0, trade: str = "order") -> dict:
    return {
        "order_id": oid, "trade_id": trade, "ts": ts, "day": ts.date().isoformat(), "symbol": "BTC-USD",
        "side": side, "qty": D(qty), "price": D(price), "fee": D(fee),
    }


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


# -- migrations ------------------------------------------------------------------------------
async def test_migrate_from_empty_is_idempotent(empty_db: Database) -> None:
    assert await table_names(empty_db) == set()
    await dbengine.migrate(empty_db.engine, empty_db.url)
    first = await table_names(empty_db)
    assert first >= TABLES | {"alembic_version"}
    async with empty_db.engine.connect() as conn:
        v1 = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert len(v1) == 1
    # Rows survive a second migration, which changes nothing.
    async with empty_db.sessions() as s, s.begin():
        await repo.claim_orders(s, rows=[order_row("ord-keep")])
    await dbengine.migrate(empty_db.engine, empty_db.url)
    assert await table_names(empty_db) == first
    async with empty_db.engine.connect() as conn:
        v2 = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert v2 == v1
    async with empty_db.sessions() as s:
        assert [o.order_id for o in await repo.get_orders(s, order_ids=["ord-keep"])] == ["ord-keep"]
    assert await dbengine.check(empty_db.engine) is True


async def test_migration_keeps_one_fill_per_order_rows_and_allows_a_row_per_trade(empty_db: Database) -> None:
    """0004: fills made before it (one row per order) stay, as their order's one fill (trade id
    `order`); from then on an order may have a row per trade, each once."""
    from alembic import command

    def upgrade_to(rev: str) -> Any:
        def run(conn: Any) -> None:
            cfg = dbengine.alembic_config(empty_db.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, rev)

        return run

    async with empty_db.engine.begin() as conn:
        await conn.run_sync(upgrade_to("0003"))
    old = {k: v for k, v in fill_row("ord-old").items() if k != "trade_id"}
    async with empty_db.sessions() as s, s.begin():
        await s.execute(text(
            "INSERT INTO fills (order_id, ts, day, symbol, side, qty, price, fee) "
            "VALUES (:order_id, :ts, :day, :symbol, :side, :qty, :price, :fee)"
        ), {**old, **{k: str(old[k]) if empty_db.is_sqlite else old[k] for k in ("qty", "price", "fee")}})
    await dbengine.migrate(empty_db.engine, empty_db.url)
    async with empty_db.sessions() as s, s.begin():
        await repo.insert_fills(s, fills=[fill_row("ord-old"), fill_row("ord-new", trade="1"),
                                          fill_row("ord-new", trade="2"), fill_row("ord-new", trade="1")])
    async with empty_db.sessions() as s:
        fills = await repo.all_fills(s)
    assert [(f.order_id, f.fill_id) for f in fills] == [("ord-old", "order"), ("ord-new", "1"), ("ord-new", "2")]
    assert fills[0].qty == D("0.5") and fills[0].price == D("20000")


# -- orders and fills ------------------------------------------------------------------------
async def test_claim_orders_returns_only_new_ids(db: Database) -> None:
    async with db.sessions() as s, s.begin():
        assert await repo.claim_orders(s, rows=[order_row("ord-a"), order_row("ord-b")]) == {"ord-a", "ord-b"}
    async with db.sessions() as s, s.begin():
        assert await repo.claim_orders(s, rows=[order_row("ord-b"), order_row("ord-c")]) == {"ord-c"}
    async with db.sessions() as s, s.begin():
        assert await repo.claim_orders(s, rows=[order_row("ord-a")]) == set()
        assert await repo.claim_orders(s, rows=[]) == set()
    async with db.sessions() as s:
        orders = await repo.get_orders(s, order_ids=["ord-a", "ord-b", "ord-c", "ord-zzz"])
        assert sorted(o.order_id for o in orders) == ["ord-a", "ord-b", "ord-c"]
        assert all(o.status == "pending" for o in orders)
        assert {o.order_id for o in await repo.stale_pending_orders(s)} == {"ord-a", "ord-b", "ord-c"}
        assert await repo.get_orders(s, order_ids=[]) == []


async def test_settle_and_fills_round_trip_decimals_exactly(db: Database) -> None:
    tiny, huge = D("0.123456789012"), D("123456789012345678.123456789012")
    async with db.sessions() as s, s.begin():
        await repo.claim_orders(s, rows=[order_row("ord-1", qty=str(tiny)), order_row("ord-2", side="sell")])
    async with db.sessions() as s, s.begin():
        await repo.settle_orders(
            s,
            orders=[
                {"order_id": "ord-1", "status": "filled", "price": huge, "fee": D("0.000000000001"),
                 "updated_at": T0 + timedelta(seconds=1)},
                {"order_id": "ord-2", "status": "rejected", "reason": "insufficient_position",
                 "updated_at": T0 + timedelta(seconds=1)},
            ],
            fills=[fill_row("ord-1", qty=str(tiny), price=str(huge), fee="0.000000000001")],
        )
    async with db.sessions() as s:
        fills = await repo.all_fills(s)
        assert fills == [FillRecord("ord-1", "BTC-USD", "buy", tiny, huge, D("0.000000000001"))]
        f = fills[0]
        assert isinstance(f.qty, Decimal) and isinstance(f.price, Decimal) and isinstance(f.fee, Decimal)
        assert format(f.qty, "f").rstrip("0") == "0.123456789012"
        assert format(f.price, "f").rstrip("0") == "123456789012345678.123456789012"  # 30 digits
        by_id = {o.order_id: o for o in await repo.get_orders(s, order_ids=["ord-1", "ord-2"])}
        assert by_id["ord-1"].status == "filled" and by_id["ord-1"].price == huge
        assert by_id["ord-1"].qty == tiny
        assert by_id["ord-2"].status == "rejected" and by_id["ord-2"].reason == "insufficient_position"
        assert by_id["ord-2"].price is None
        assert await repo.stale_pending_orders(s) == []
        [recent] = await repo.recent_fills(s)
        assert recent.ts == T0 and recent.ts.tzinfo is not None and recent.day == "2026-03-14"


async def test_money_is_never_a_binary_float_in_storage(db: Database) -> None:
    async with db.sessions() as s, s.begin():
        await repo.settle_orders(s, orders=[], fills=[fill_row("ord-x", qty="0.1", price="0.3", fee="0.000000000001")])
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            row = (await conn.execute(text("SELECT typeof(qty), typeof(price), typeof(fee), qty FROM fills"))).one()
            assert row[:3] == ("text", "text", "text")
            assert row[3] == "0.1"
        else:
            row = (await conn.execute(text(
                "SELECT data_type FROM information_schema.columns WHERE table_name = 'fills' AND column_name = 'qty'"
                " AND table_schema = current_schema()"
            ))).one()
            assert row[0] == "numeric"
    async with db.sessions() as s:
        [f] = await repo.all_fills(s)
        assert f.qty * 3 == D("0.3") and f.price == D("0.3")  # 0.1 × 3 == 0.3: no float on the way


async def test_fills_are_one_row_per_trade_each_recorded_once(db: Database) -> None:
    """An order filled in parts: a row per trade, in the order recorded; a trade recorded again
    (a redelivery, the final status repeating the partial fills) is still one row."""
    first, second = fill_row("ord-p", qty="0.1", trade="7"), fill_row("ord-p", qty="0.2", price="20010", trade="9")
    async with db.sessions() as s, s.begin():
        await repo.insert_fills(s, fills=[first])
    for _ in range(2):
        async with db.sessions() as s, s.begin():
            await repo.settle_orders(s, orders=[], fills=[first, second])
    async with db.sessions() as s:
        fills = await repo.all_fills(s)
    assert [(f.order_id, f.fill_id, f.qty, f.price) for f in fills] == [
        ("ord-p", "7", D("0.1"), D("20000")),
        ("ord-p", "9", D("0.2"), D("20010")),
    ]


async def test_fills_unique_by_order_id(db: Database) -> None:
    fill = fill_row("ord-dup", qty="1", price="100")
    for _ in range(2):
        async with db.sessions() as s, s.begin():
            await repo.settle_orders(s, orders=[], fills=[fill])
    async with db.sessions() as s, s.begin():
        # Even a different fill under the same order id (a redelivered status with another price).
        await repo.settle_orders(s, orders=[], fills=[fill_row("ord-dup", qty="2", price="999"), fill_row("ord-2")])
    async with db.sessions() as s:
        fills = await repo.all_fills(s)
    assert [(f.order_id, f.qty, f.price) for f in fills] == [
        ("ord-dup", D("1"), D("100")),
        ("ord-2", D("0.5"), D("20000")),
    ]


async def test_insert_new_rolls_back_with_the_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.sessions() as s, s.begin():
            await repo.claim_orders(s, rows=[order_row("ord-rb")])
            raise RuntimeError("crash before commit")
    async with db.sessions() as s, s.begin():
        assert await repo.claim_orders(s, rows=[order_row("ord-rb")]) == {"ord-rb"}


# -- halt ------------------------------------------------------------------------------------
async def test_halt_round_trip_and_events(db: Database) -> None:
    async with db.sessions() as s:
        assert await repo.load_halt(s) == HaltState()
        assert await repo.halt_events(s) == []
    state = HaltState(True, "daily_loss_limit", "reduce_only", T0, "auto", "PnL -3.2%")
    async with db.sessions() as s, s.begin():
        await repo.save_halt(s, state=state, now=T0, event={
            "action": "halt", "reason": state.reason, "mode": state.mode, "actor": "auto", "source": "pnl",
            "note": state.note, "detail": {"pnlPct": "-3.2"},
        })
    async with db.sessions() as s:
        loaded = await repo.load_halt(s)
    assert loaded == state
    assert loaded.halted_at is not None and loaded.halted_at.tzinfo is not None
    later = T0 + timedelta(hours=1)
    async with db.sessions() as s, s.begin():
        await repo.save_halt(s, state=HaltState(), now=later, event={
            "action": "unhalt", "actor": "alice", "source": "127.0.0.1", "note": "limit raised",
        })
    async with db.sessions() as s:
        assert await repo.load_halt(s) == HaltState()
        events = await repo.halt_events(s)
        assert [e.action for e in events] == ["unhalt", "halt"]  # newest first, appended
        assert events[1].detail == {"pnlPct": "-3.2"} and events[1].reason == "daily_loss_limit"
        assert events[0].ts == later and events[0].actor == "alice"
        assert [e.action for e in await repo.halt_events(s, limit=1)] == ["unhalt"]
        n = (await s.execute(text("SELECT count(*) FROM halt_state"))).scalar_one()
        assert n == 1  # one row, upserted


async def test_save_halt_is_atomic_with_its_event(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.sessions() as s, s.begin():
            await repo.save_halt(s, state=HaltState(True, "manual", "halt", T0, "bob", None), now=T0,
                                 event={"action": "halt", "reason": "manual"})
            raise RuntimeError("crash before commit")
    async with db.sessions() as s:
        assert await repo.load_halt(s) == HaltState()
        assert await repo.halt_events(s) == []


# -- trading day and marks -------------------------------------------------------------------
async def test_save_day_get_day_upsert(db: Database) -> None:
    async with db.sessions() as s:
        assert await repo.get_day(s, day="2026-03-14") is None
    row = {"day": "2026-03-14", "start_equity": D("10000"), "target_pct": D("5"), "loss_limit_pct": D("3"),
           "last_equity": None, "updated_at": T0}
    async with db.sessions() as s, s.begin():
        await repo.save_day(s, row=row)
    async with db.sessions() as s, s.begin():
        await repo.save_day(s, row={**row, "loss_limit_pct": D("4.5"), "last_equity": D("9712.345678901234"),
                                    "updated_at": T0 + timedelta(minutes=1)})
        await repo.save_day(s, row={**row, "day": "2026-03-15", "start_equity": D("9712.34")})
    async with db.sessions() as s:
        d = await repo.get_day(s, day="2026-03-14")
        assert d is not None
        assert (d.start_equity, d.target_pct, d.loss_limit_pct) == (D("10000"), D("5"), D("4.5"))
        assert d.last_equity == D("9712.345678901234")
        assert d.updated_at == T0 + timedelta(minutes=1)
        d2 = await repo.get_day(s, day="2026-03-15")
        assert d2 is not None and d2.start_equity == D("9712.34")
        assert (await s.execute(text("SELECT count(*) FROM pnl_days"))).scalar_one() == 2


async def test_marks_upsert(db: Database) -> None:
    async with db.sessions() as s, s.begin():
        await repo.save_marks(s, marks={"BTC-USD": (D("20000.5"), T0), "ETH-USD": (D("1500"), T0)})
    async with db.sessions() as s, s.begin():
        await repo.save_marks(s, marks={"BTC-USD": (D("20100.25"), T0 + timedelta(minutes=1))})
    async with db.sessions() as s:
        assert await repo.load_marks(s) == {"BTC-USD": D("20100.25"), "ETH-USD": D("1500")}


# -- runs ------------------------------------------------------------------------------------
async def test_add_runs_update_runs(db: Database) -> None:
    base = {"created_at": T0, "symbol": "BTC-USD", "manual": False}
    async with db.sessions() as s, s.begin():
        assert await run_repo.add_runs(s, rows=[{**base, "request_id": "r1"}, {**base, "request_id": "r2"}]) == {
            "r1", "r2"}
    async with db.sessions() as s, s.begin():
        assert await run_repo.add_runs(s, rows=[{**base, "request_id": "r2"}, {**base, "request_id": "r3",
                                                                           "manual": True}]) == {"r3"}
    async with db.sessions() as s, s.begin():
        # Rows with different column sets in one call.
        await run_repo.update_runs(s, rows=[
            {"request_id": "r1", "outcome": "filled", "side": "buy", "qty": D("0.01"), "price": D("20000.12"),
             "confidence": 0.8123, "order_id": "ord-r1", "finished_at": T0 + timedelta(seconds=2)},
            {"request_id": "r2", "outcome": "rejected", "reason": "max_order_notional"},
            {"request_id": "r-missing", "outcome": "hold"},
        ])
    async with db.sessions() as s:
        r1 = await run_repo.get_run(s, request_id="r1")
        assert r1 is not None
        assert (r1.outcome, r1.side, r1.qty, r1.price, r1.order_id) == (
            "filled", "buy", D("0.01"), D("20000.12"), "ord-r1")
        assert r1.confidence == pytest.approx(0.8123)
        assert r1.finished_at == T0 + timedelta(seconds=2)
        r2 = await run_repo.get_run(s, request_id="r2")
        assert r2 is not None and r2.outcome == "rejected" and r2.reason == "max_order_notional"
        assert await run_repo.get_run(s, request_id="r-missing") is None
        r3 = await run_repo.get_run(s, request_id="r3")
        assert r3 is not None and r3.manual is True
        assert [r.request_id for r in await run_repo.open_runs(s)] == ["r3"]


def run_row(rid: str, **kw: object) -> dict:
    row = {"request_id": rid, "created_at": T0, "symbol": "BTC-USD", "manual": True, "side": "buy",
           "qty": D("0.01"), "price": D("20000.5"), "strategy": None, "confidence": 1.0, "outcome": None,
           "reason": None, "order_id": f"ord-{rid}", "finished_at": None}
    return {**row, **kw}


async def test_write_runs_inserts_takes_over_changes_and_fails_refusals(db: Database) -> None:
    """The run book's group commit (one asyncpg statement on PostgreSQL): new rows inserted; a
    new run whose row is open or refused takes it over; one whose row is finished leaves it and
    is not returned; changes and refusals written where the row is open."""
    refused = "refused: database unavailable at acceptance"
    later = T0 + timedelta(seconds=5)
    async with db.sessions() as s, s.begin():
        first = ("open", "refused", "done", "mine", "landed", "gone")
        assert await run_repo.write_runs(s, new=[run_row(r) for r in first], changed=[], refused=[],
                                         refused_reason=refused, refused_at=None) == set(first)
    async with db.sessions() as s, s.begin():
        assert await run_repo.write_runs(
            s, new=[], changed=[run_row("refused", outcome="failed", reason=refused, finished_at=later),
                                run_row("done", outcome="filled", finished_at=later)],
            refused=["landed", "gone", "absent"], refused_reason=refused, refused_at=later) == set()
    retry = {"qty": D("0.02"), "created_at": later}
    async with db.sessions() as s, s.begin():
        ours = await run_repo.write_runs(
            s, new=[run_row(r, **retry) for r in ("open", "refused", "done", "new")],
            changed=[run_row("mine", outcome="rejected", reason="max_order_notional", confidence=0.8123)],
            refused=[], refused_reason=refused, refused_at=None)
    assert ours == {"open", "refused", "new"}  # "done" is a finished run's: left as it was
    async with db.sessions() as s:
        rows = {r: await run_repo.get_run(s, request_id=r) for r in
                ("open", "refused", "done", "new", "mine", "landed", "gone", "absent")}
    got = {r: (v.outcome, v.qty, v.created_at) for r, v in rows.items() if v is not None}
    assert got == {
        "open": (None, D("0.02"), later), "refused": (None, D("0.02"), later), "new": (None, D("0.02"), later),
        "done": ("filled", D("0.01"), T0), "mine": ("rejected", D("0.01"), T0),
        "landed": ("failed", D("0.01"), T0), "gone": ("failed", D("0.01"), T0),
    }
    assert rows["landed"] is not None and (rows["landed"].reason, rows["landed"].finished_at) == (refused, later)
    assert rows["mine"] is not None and rows["mine"].confidence == pytest.approx(0.8123)
    assert rows["refused"] is not None and rows["refused"].reason is None


# -- audit -----------------------------------------------------------------------------------
async def test_audit_add_and_tail(db: Database) -> None:
    rows = [
        {"ts": T0 + timedelta(minutes=i), "agent": "orchestrator", "action": action, "actor": "tok:abc",
         "source": "127.0.0.1", "target": "/admin", "result": "ok", "request_id": None, "detail": {"i": i}}
        for i, action in enumerate(["admin.halt", "admin.unhalt", "run.start", "admin.halt", "auth.fail"])
    ]
    async with db.sessions() as s, s.begin():
        await repo.add_audit(s, rows=rows)
        await repo.add_audit(s, rows=[])
    async with db.sessions() as s:
        tail = await repo.audit_tail(s, limit=3)
        assert [e.detail["i"] for e in tail] == [4, 3, 2]  # newest first
        assert [e.detail["i"] for e in await repo.audit_tail(s, action_prefix="admin.")] == [3, 1, 0]
        since = await repo.audit_tail(s, since=T0 + timedelta(minutes=3))
        assert [e.action for e in since] == ["auth.fail", "admin.halt"]
        assert since[0].ts == T0 + timedelta(minutes=4) and since[0].ts.tzinfo is not None
        assert len(await repo.audit_tail(s)) == 5
