"""The orchestrator's watchdogs (control/watchdogs.py) over fakes of the parts they watch: no
Redis, no database, a fake monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import redis

from cli_trading.contracts import HaltMode, HaltReason
from cli_trading.control.runs import Run, RunBook
from cli_trading.control.watchdogs import WATCHED_DLQS, Watchdogs
from cli_trading.halt import policy
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord, Ledger

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ORDERS_DLQ, STATUS_DLQ = WATCHED_DLQS


class FakeRedis:
    def __init__(self) -> None:
        self.lengths: dict[str, int] = {}

    async def xlen(self, key: str) -> int:
        return self.lengths.get(key, 0)


class FakeHalts:
    """Applies decisions as the halt service does (policy.halt), and counts reconciliations."""

    def __init__(self, state: HaltState | None = None) -> None:
        self.state = state or HaltState()
        self.decisions: list[policy.Decision] = []
        self.reconciled = 0

    def apply(self, decision: policy.Decision | None) -> dict[str, Any] | None:
        if decision is None:
            return None
        self.decisions.append(decision)
        self.state = policy.halt(
            self.state, reason=decision.reason, mode=decision.mode, actor=decision.actor, note=decision.note, now=NOW
        )
        return self.state.to_api()

    async def reconcile(self) -> None:
        self.reconciled += 1


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append(("error", event, kw))


class Parts:
    """The watchdogs and the fakes they watch."""

    def __init__(self, halts: FakeHalts | None = None) -> None:
        self.redis, self.halts, self.runs, self.log = FakeRedis(), halts or FakeHalts(), RunBook(), Log()
        self.ledger = Ledger(Decimal(10_000))
        self.db_ok, self.now, self.rolled, self.flattened = True, 100.0, 0, 0
        self.watchdogs = Watchdogs(
            redis=self.redis,
            halts=self.halts,
            runs=self.runs,
            ledger=self.ledger,
            db_up=self._db_up,
            db_outage_halt_s=30,
            roll_day=self._roll_day,
            flatten=self._flatten,
            log=self.log,
            monotonic=lambda: self.now,
        )

    async def _db_up(self) -> bool:
        return self.db_ok

    async def _roll_day(self) -> None:
        self.rolled += 1

    async def _flatten(self) -> list[str]:
        self.flattened += 1
        return []

    def run_in_flight(self) -> None:
        self.runs.add(Run(f"r{len(self.runs.active)}", "BTC-USD", NOW, side="buy"))

    def hold(self, qty: str = "0.5") -> None:
        self.ledger.apply(FillRecord("ord-1", "BTC-USD", "buy", Decimal(qty), Decimal("100"), Decimal("0")))


def flatten_halt() -> FakeHalts:
    state = policy.halt(HaltState(), reason=HaltReason.EMERGENCY, mode=HaltMode.FLATTEN, actor="op", note=None, now=NOW)
    return FakeHalts(state)


async def test_a_step_rolls_the_day_and_reconciles_the_flag() -> None:
    p = Parts()
    await p.watchdogs.step()
    await p.watchdogs.step()
    assert (p.rolled, p.halts.reconciled) == (2, 2)
    assert p.halts.decisions == []


async def test_dead_letters_already_there_at_start_do_not_halt() -> None:
    p = Parts()
    p.redis.lengths = {ORDERS_DLQ: 3, STATUS_DLQ: 1}
    await p.watchdogs.start()
    await p.watchdogs.step()
    assert p.halts.decisions == []


async def test_a_new_dead_letter_on_the_order_path_halts_once() -> None:
    p = Parts()
    await p.watchdogs.start()
    p.redis.lengths[STATUS_DLQ] = 2
    await p.watchdogs.step()
    assert [(d.reason, d.note) for d in p.halts.decisions] == [
        (HaltReason.SYSTEM_ERROR, f"2 message(s) dead-lettered on {STATUS_DLQ}")
    ]
    p.redis.lengths[STATUS_DLQ] = 3
    await p.watchdogs.step()
    assert len(p.halts.decisions) == 1  # halted already: the first cause stays on record


async def test_a_trimmed_dead_letter_stream_is_not_a_new_dead_letter() -> None:
    p = Parts()
    p.redis.lengths = {ORDERS_DLQ: 5}
    await p.watchdogs.start()
    p.redis.lengths = {ORDERS_DLQ: 1}  # requeued by the operator
    await p.watchdogs.step()
    assert p.halts.decisions == []
    p.redis.lengths = {ORDERS_DLQ: 2}  # one more since the last look
    await p.watchdogs.step()
    assert len(p.halts.decisions) == 1


async def test_a_database_outage_halts_after_the_limit_with_orders_in_flight() -> None:
    p = Parts()
    p.run_in_flight()
    p.db_ok = False
    await p.watchdogs.step()  # down since 100.0
    p.now = 129.0
    await p.watchdogs.step()
    assert p.halts.decisions == []
    p.now = 130.0
    await p.watchdogs.step()
    assert [d.note for d in p.halts.decisions] == ["database unreachable for 30s with orders in flight"]


async def test_a_database_back_before_the_limit_starts_counting_again() -> None:
    p = Parts()
    p.run_in_flight()
    p.db_ok = False
    await p.watchdogs.step()
    p.now, p.db_ok = 120.0, True
    await p.watchdogs.step()
    assert p.watchdogs.db_down_since is None
    p.now, p.db_ok = 125.0, False
    await p.watchdogs.step()
    p.now = 150.0  # 25 s of this outage, 50 s since the first
    await p.watchdogs.step()
    assert p.halts.decisions == []


async def test_a_database_outage_without_orders_in_flight_does_not_halt() -> None:
    p = Parts()
    p.db_ok = False
    await p.watchdogs.step()
    p.now = 1_000.0
    await p.watchdogs.step()
    assert p.halts.decisions == []


async def test_flatten_mode_closes_what_is_open_once_nothing_is_on_its_way() -> None:
    p = Parts(flatten_halt())
    await p.watchdogs.step()
    assert p.flattened == 0  # flat: nothing to close
    p.hold()
    p.run_in_flight()
    await p.watchdogs.step()
    assert p.flattened == 0  # an order on its way: wait for it
    p.runs.active.clear()
    for round_ in range(1, policy.FLATTEN_ROUNDS + 1):
        await p.watchdogs.step()
        assert p.flattened == round_
    await p.watchdogs.step()
    await p.watchdogs.step()
    assert p.flattened == policy.FLATTEN_ROUNDS  # the rounds are spent: left to the operator, said once
    assert [line for line in p.log.lines if line[0] == "error"] == [
        (
            "error",
            "flatten: positions still open after the last round, close them by hand",
            {"symbols": ["BTC-USD"]},
        )
    ]


async def test_a_failing_watchdog_never_stops_the_others() -> None:
    p = Parts()
    p.run_in_flight()

    async def broken() -> None:
        raise RuntimeError("boom")

    p.watchdogs.roll_day = broken
    p.db_ok = False
    await p.watchdogs.step()
    p.now = 200.0
    await p.watchdogs.step()
    assert [line[1] for line in p.log.lines] == ["watch step failed", "watch step failed"]
    assert len(p.halts.decisions) == 1  # the database watchdog still ran


@pytest.mark.parametrize("error", [redis.ConnectionError("down"), redis.TimeoutError("slow")])
async def test_redis_down_is_not_logged_as_a_failure(error: Exception) -> None:
    p = Parts()

    async def unreachable() -> None:
        raise error

    p.halts.reconcile = unreachable  # type: ignore[method-assign]  # Redis gone mid-step
    await p.watchdogs.step()
    assert p.log.lines == []
