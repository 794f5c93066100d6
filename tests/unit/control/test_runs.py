"""The run book (control/runs.py): one outcome per run, what is in flight, the group commit that
makes a 202 mean "committed", and a run found again after a restart. No database: a fake session
records what would be written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from cli_trading.control import runs as runs_module
from cli_trading.control.runs import Run, RunBook, limit_fields

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class FakeDb:
    """Sessions whose transactions record the runs the book writes (new, changed), or fail."""

    def __init__(self) -> None:
        self.commits: list[dict[str, list[str]]] = []
        self.fail: Exception | None = None
        self.rows: dict[str, Any] = {}
        self.gate: asyncio.Event | None = None  # while set and not yet open: commits wait for it
        self.written: dict[str, list[str]] = {}

    def __call__(self) -> FakeDb:
        return self

    async def __aenter__(self) -> FakeDb:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def begin(self) -> FakeDb.Tx:
        self.written = {"new": [], "changed": []}
        return FakeDb.Tx(self)

    class Tx:
        def __init__(self, db: FakeDb) -> None:
            self.db = db

        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, exc_type: object, *exc: object) -> None:
            if self.db.gate is not None:
                await self.db.gate.wait()
            if exc_type is None:
                if self.db.fail is not None:
                    raise self.db.fail
                self.db.commits.append(self.db.written)


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> FakeDb:
    fake = FakeDb()

    async def write_runs(session: FakeDb, *, new: list[dict[str, Any]], changed: list[dict[str, Any]],
                         **_: Any) -> set[str]:
        session.written["new"] += [r["request_id"] for r in new]
        session.written["changed"] += [r["request_id"] for r in changed]
        return {r["request_id"] for r in new}

    async def get_run(session: FakeDb, *, request_id: str) -> Any:
        return session.rows.get(request_id)

    monkeypatch.setattr(runs_module.run_repo, "write_runs", write_runs)
    monkeypatch.setattr(runs_module.run_repo, "get_run", get_run)
    return fake


def run(rid: str = "r1", **kw: Any) -> Run:
    return Run(rid, kw.pop("symbol", "BTC-USD"), NOW, **kw)


def test_exactly_one_outcome() -> None:
    book = RunBook()
    r = run()
    book.add(r)
    book.finish(r, "filled", reason=None, now=NOW)
    book.finish(r, "failed", reason="late", now=NOW)
    assert (r.outcome, r.reason, r.steps) == ("filled", None, ["filled"])
    assert "r1" in book and book.get("r1") is r and not book.active


def test_in_flight_by_symbol_and_kind() -> None:
    book = RunBook()
    book.add(run("a", manual=True))
    book.add(run("b", symbol="ETH-USD"))
    book.add(run("c"))
    assert book.in_flight() == 3
    assert book.in_flight(symbol="BTC-USD") == 2
    assert book.in_flight(symbol="BTC-USD", manual=False) == 1


def test_finished_runs_in_memory_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_module, "KEEP_FINISHED", 3)
    book = RunBook()
    for i in range(5):
        r = run(f"r{i}")
        book.add(r)
        book.finish(r, "hold", reason=None, now=NOW)
    assert list(book.finished) == ["r2", "r3", "r4"]


def test_limit_orders_keep_their_time_in_force() -> None:
    assert limit_fields("limit:IOC") == {"type": "limit", "timeInForce": "IOC"}
    assert limit_fields("trend") == {} and limit_fields(None) == {}


async def test_durable_writes_new_runs_then_their_changes(db: FakeDb) -> None:
    book = RunBook()
    r = run()
    book.add(r)
    book.touch(r, "risk")
    await book.durable(db)
    assert db.commits == [{"new": ["r1"], "changed": []}]  # a change to a new run rides with it
    book.touch(r, "ordered")
    await book.durable(db)
    await book.durable(db)  # nothing new: no transaction
    assert db.commits[1:] == [{"new": [], "changed": ["r1"]}]


async def test_a_step_the_row_does_not_hold_is_shown_not_written(db: FakeDb) -> None:
    book = RunBook()
    r = run()
    book.add(r)
    await book.durable(db)
    book.step(r, "ordered")  # the order sent: no column of the row changes
    await book.durable(db)
    assert db.commits == [{"new": ["r1"], "changed": []}] and not book.dirty
    assert r.to_api()["state"] == "ordered"
    book.finish(r, "filled", reason=None, now=NOW)
    await book.durable(db)
    assert db.commits[1:] == [{"new": [], "changed": ["r1"]}]


async def test_a_failed_commit_is_written_by_the_next(db: FakeDb) -> None:
    book = RunBook()
    book.add(run())
    db.fail = ConnectionError("database gone")
    with pytest.raises(ConnectionError):
        await book.durable(db)
    assert book.dirty and db.commits == []
    db.fail = None
    await book.durable(db)
    assert db.commits == [{"new": ["r1"], "changed": []}]


async def test_a_run_changed_while_its_first_write_fails_is_written_once(db: FakeDb) -> None:
    """Touched while its insert is under way, then the insert fails: the run is new again and
    changed; the next transaction writes it once, as new (on PostgreSQL one row may not be
    written twice by one statement)."""
    book = RunBook()
    r = run()
    book.add(r)
    db.gate, db.fail = asyncio.Event(), ConnectionError("database gone")
    first = asyncio.create_task(book.durable(db))
    await asyncio.sleep(0)  # its transaction is open
    book.touch(r, "ordered")
    db.gate.set()
    with pytest.raises(ConnectionError):
        await first
    db.fail = db.gate = None
    await book.durable(db)
    assert db.commits == [{"new": ["r1"], "changed": []}]
    assert r.steps == ["ordered"]


async def test_callers_waiting_together_share_one_transaction(db: FakeDb) -> None:
    book = RunBook()
    book.add(run("first"))
    db.gate = asyncio.Event()
    first = asyncio.create_task(book.durable(db))
    await asyncio.sleep(0)  # its transaction is open
    others = []
    for i in range(3):
        book.add(run(f"later{i}"))
        others.append(asyncio.create_task(book.durable(db)))
    await asyncio.sleep(0)
    db.gate.set()
    await asyncio.gather(first, *others)
    assert db.commits == [
        {"new": ["first"], "changed": []},
        {"new": ["later0", "later1", "later2"], "changed": []},
    ]


async def test_a_run_never_committed_is_forgotten() -> None:
    book = RunBook()
    r = run()
    book.add(r)
    book.forget(r)
    assert "r1" not in book and not book.dirty


async def test_lookup_finds_a_run_left_open_by_a_restart(db: FakeDb) -> None:
    book = RunBook()
    row = dict(
        request_id="old",
        symbol="BTC-USD",
        created_at=NOW,
        manual=False,
        side="buy",
        qty=Decimal("0.1"),
        price=Decimal(100),
        strategy="trend",
        confidence=0.7,
        outcome=None,
        reason=None,
        order_id=None,
        finished_at=None,
    )
    db.rows["old"] = SimpleNamespace(**row)
    db.rows["done"] = SimpleNamespace(**{**row, "request_id": "done", "outcome": "filled"})
    found = await book.lookup("old", db)
    assert found is not None and (found.side, found.qty) == ("buy", Decimal("0.1"))
    assert book.active == {"old": found} and not book.dirty  # active again, nothing to write
    done = await book.lookup("done", db)
    assert done is not None and done.outcome == "filled" and "done" not in book.active
    assert await book.lookup("never", db) is None
