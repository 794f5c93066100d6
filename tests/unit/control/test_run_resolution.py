"""What becomes of a run found open after a crash (control/runs.py `resolve`), and what the row
committed at a run's acceptance already says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from cli_trading.contracts import order_id_for
from cli_trading.control import runs
from cli_trading.control.runs import Run, RunBook, from_row, resolve

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def run(**kw: object) -> Run:
    r = Run("r1", "BTC-USD", NOW)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_the_executors_ledger_has_the_last_word() -> None:
    sized = run(side="buy", qty=Decimal("0.1"), price=Decimal("100"))
    for status in ("filled", "rejected", "failed"):
        res = resolve(sized, SimpleNamespace(status=status, reason="why"))
        assert (res.action, res.outcome, res.reason) == ("finish", status, "why")
    assert resolve(sized, SimpleNamespace(status="pending", reason=None)).action == "wait"


def test_a_sized_run_without_an_order_goes_to_risk_again() -> None:
    assert resolve(run(side="sell", qty=Decimal("1"), price=Decimal("5")), None).action == "resend"


def test_an_analysis_without_a_signal_holds() -> None:
    res = resolve(run(), None)
    assert (res.action, res.outcome) == ("finish", "hold") and "restart" in (res.reason or "")


def test_a_run_names_its_order_from_the_start() -> None:
    assert Run("r1", "BTC-USD", NOW).order_id == order_id_for("r1")
    assert Run("r1", "BTC-USD", NOW).row()["order_id"] == order_id_for("r1")
    written_before = SimpleNamespace(**{**Run("r2", "BTC-USD", NOW).row(), "order_id": None})
    assert from_row(written_before).order_id == order_id_for("r2")  # stored with its next change


def test_the_row_committed_at_acceptance_names_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor may settle a fill before the run's next change is written (every 100 ms): the
    fill's order must already have its run in the table then (the chaos suite's `kill -9
    orchestrator` found a fill whose run had not been written with its order yet)."""
    written: list[dict[str, Any]] = []

    async def write_runs(
        session: object, *, new: list[dict[str, Any]], changed: list[dict[str, Any]], **_: Any
    ) -> set[str]:
        written.extend(new + changed)
        return {r["request_id"] for r in new}

    class Session:
        def begin(self) -> Any:
            return contextlib.nullcontext()  # a transaction that commits

    @contextlib.asynccontextmanager
    async def sessions() -> AsyncIterator[Session]:
        yield Session()

    monkeypatch.setattr(runs.run_repo, "write_runs", write_runs)
    book = RunBook()
    book.add(Run("r1", "BTC-USD", NOW, manual=True, side="buy", qty=Decimal("0.1"), price=Decimal("100")))
    book.touch(book.active["r1"], "risk")
    asyncio.run(book.durable(sessions))  # the 202's commit: nothing else is written before the fill
    assert [(r["request_id"], r["order_id"]) for r in written] == [("r1", order_id_for("r1"))]
