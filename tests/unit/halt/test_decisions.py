"""Every automatic halt decision (halt/policy.py): facts in, a decision out; no services, a fake
clock (monotonic seconds and datetimes passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from cli_trading.contracts import HaltMode, HaltReason
from cli_trading.halt import policy
from cli_trading.halt.policy import Decision, Drift, DriftLimits, FlattenRounds
from cli_trading.halt.state import HaltState, Limits

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
FREE = HaltState()
HALTED = policy.halt(FREE, reason=HaltReason.MANUAL, mode=HaltMode.HALT, actor="op", note=None, now=NOW)


def test_pnl_limits_note_names_the_figures() -> None:
    d = policy.pnl_limits(FREE, pnl_pct=D("-3.456"), limits=Limits(D(5), D(3)))
    assert d == Decision(HaltReason.DAILY_LOSS, "PnL -3.46% against target 5% / loss limit -3%")


@pytest.mark.parametrize(("n", "threshold", "halts"), [(0, 5, False), (4, 5, False), (5, 5, True), (9, 5, True)])
def test_execution_failures(n: int, threshold: int, halts: bool) -> None:
    d = policy.execution_failures(FREE, consecutive=n, threshold=threshold)
    assert (d is not None) is halts
    if d:
        assert d.reason == HaltReason.SYSTEM_ERROR and d.note == f"{n} consecutive execution failures"
    assert policy.execution_failures(HALTED, consecutive=n, threshold=threshold) is None


def test_auth_spike_only_when_enabled_and_not_halted() -> None:
    d = policy.auth_spike(FREE, enabled=True, source="10.0.0.9")
    assert d == Decision(HaltReason.SECURITY, "failed authentication spike", source="10.0.0.9")
    assert policy.auth_spike(FREE, enabled=False, source="10.0.0.9") is None
    assert policy.auth_spike(HALTED, enabled=True, source="10.0.0.9") is None


def test_dead_letters() -> None:
    assert policy.dead_letters(FREE, new={"exec.orders.dlq": 0, "exec.status.dlq": 0}) is None
    d = policy.dead_letters(FREE, new={"exec.orders.dlq": 0, "exec.status.dlq": 2})
    assert d == Decision(HaltReason.SYSTEM_ERROR, "2 message(s) dead-lettered on exec.status.dlq")
    assert policy.dead_letters(HALTED, new={"exec.status.dlq": 2}) is None


def test_database_outage_waits_for_its_limit_and_orders_in_flight() -> None:
    def decide(down_since: float | None, now: float, in_flight: bool = True) -> Decision | None:
        return policy.database_outage(FREE, down_since=down_since, now=now, limit_s=30, orders_in_flight=in_flight)

    assert decide(None, 1000.0) is None  # up
    assert decide(1000.0, 1029.9) is None  # not long enough
    assert decide(1000.0, 1031.0, in_flight=False) is None  # nothing to lose
    d = decide(1000.0, 1031.0)
    assert d == Decision(HaltReason.SYSTEM_ERROR, "database unreachable for 31s with orders in flight")
    assert policy.database_outage(HALTED, down_since=0.0, now=99.0, limit_s=30, orders_in_flight=True) is None


def test_reconciliation_drift_past_the_limit_on_consecutive_checks() -> None:
    limits = DriftLimits(value=D(10), confirmations=2)
    within = Drift(value=D("9.99"))
    off = Drift(value=D("50.5"), detail="USDT 950 at the exchange vs 1000 in the ledger")
    assert not policy.drift_over(within, limits) and policy.drift_over(off, limits)
    assert policy.reconciliation_drift(FREE, drift=within, limits=limits, checks_over=5) is None
    assert policy.reconciliation_drift(FREE, drift=off, limits=limits, checks_over=1) is None  # not confirmed
    d = policy.reconciliation_drift(FREE, drift=off, limits=limits, checks_over=2)
    assert d is not None and d.reason == HaltReason.RECONCILIATION_DRIFT == "reconciliation_drift"
    assert d.note == "drift 50.5 (limit 10): USDT 950 at the exchange vs 1000 in the ledger"
    assert policy.reconciliation_drift(HALTED, drift=off, limits=limits, checks_over=2) is None


def test_reconciliation_drift_unknown_open_orders_are_drift() -> None:
    drift = Drift(value=D(0), unknown_orders=3)
    limits = DriftLimits(value=D(10), confirmations=1)
    d = policy.reconciliation_drift(FREE, drift=drift, limits=limits, checks_over=1)
    assert d is not None and d.note == "drift 0 (limit 10): 3 open order(s) unknown to the ledger"


def test_overrides_only_a_forced_unhalt_of_an_automatic_pnl_halt() -> None:
    loss = policy.halt(FREE, reason=HaltReason.DAILY_LOSS, mode=HaltMode.HALT, actor="system", note=None, now=NOW)
    assert policy.overrides(loss, force=True) == HaltReason.DAILY_LOSS
    assert policy.overrides(loss, force=False) is None
    assert policy.overrides(HALTED, force=True) is None


def test_flatten_rounds_close_then_give_up_once() -> None:
    flat = policy.halt(FREE, reason="emergency_stop", mode=HaltMode.FLATTEN, actor="op", note=None, now=NOW)
    rounds = FlattenRounds()
    # nothing to do: not in flatten mode, something on its way, or nothing open
    for state, in_flight, open_ in ((HALTED, False, True), (flat, True, True), (flat, False, False)):
        assert policy.flatten_round(state, rounds, orders_in_flight=in_flight, positions_open=open_) == (rounds, None)
    steps = []
    for _ in range(8):
        rounds, step = policy.flatten_round(flat, rounds, orders_in_flight=False, positions_open=True, max_rounds=3)
        steps.append(step)
    assert steps == ["close", "close", "close", "give_up", None, None, None, None]
    # a new halt starts counting again
    later = policy.halt(FREE, reason="manual", mode=HaltMode.FLATTEN, actor="op", note=None, now=NOW + timedelta(1))
    assert policy.flatten_round(later, rounds, orders_in_flight=False, positions_open=True)[1] == "close"


def test_at_start_keeps_a_halt_only_redis_has_and_never_undoes_one() -> None:
    redis_only = policy.halt(FREE, reason="emergency_stop", mode=HaltMode.HALT, actor="op", note=None, now=NOW)
    assert policy.at_start(FREE, saved_at=NOW - timedelta(seconds=1), live=redis_only) is redis_only
    assert policy.at_start(FREE, saved_at=None, live=redis_only) is redis_only
    # an older halt in Redis (restored from an old snapshot) does not undo a recorded unhalt
    assert policy.at_start(FREE, saved_at=NOW + timedelta(seconds=1), live=redis_only) is FREE
    # the database's halt wins over whatever Redis shows
    assert policy.at_start(HALTED, saved_at=NOW, live=None) is HALTED
    assert policy.at_start(HALTED, saved_at=NOW, live=FREE) is HALTED


def test_flag_is_stale() -> None:
    assert policy.flag_is_stale(HALTED, None)
    assert policy.flag_is_stale(HALTED, FREE)
    assert policy.flag_is_stale(HALTED, policy.with_mode(HALTED, HaltMode.FLATTEN))
    assert not policy.flag_is_stale(HALTED, HALTED)
    assert not policy.flag_is_stale(FREE, FREE)
