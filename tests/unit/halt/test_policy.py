"""Halt policy, the trading day and halt severities: pure functions with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from cli_trading.contracts import AUTO_CLEARING_REASONS, HaltMode, HaltReason, halt_severity
from cli_trading.halt.policy import (
    UnhaltRefused,
    allows,
    clears_at_rollover,
    halt,
    pnl_limits,
    unhalt,
    with_mode,
)
from cli_trading.halt.state import HaltState, Limits, from_redis
from cli_trading.trading import day as tday

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
LIMITS = Limits(target_pct=Decimal("5"), loss_limit_pct=Decimal("3"))
D = Decimal


def halted(reason: str = HaltReason.MANUAL, mode: str = HaltMode.HALT) -> HaltState:
    return halt(HaltState(), reason=reason, mode=mode, actor="alice", note="n", now=NOW)


# -- halt / unhalt -----------------------------------------------------------------------------
def test_halt_records_who_why_when() -> None:
    s = halted()
    assert s == HaltState(True, HaltReason.MANUAL, HaltMode.HALT, NOW, "alice", "n")
    api = s.to_api()
    assert api == {
        "halted": True,
        "haltReason": "manual",
        "haltMode": "halt",
        "haltedAt": "2026-03-14T15:09:26Z",
        "haltedBy": "alice",
        "haltNote": "n",
    }


def test_second_halt_replaces_reason_and_mode_but_keeps_halted_at() -> None:
    first = halted()
    later = NOW + timedelta(minutes=5)
    second = halt(first, reason=HaltReason.EMERGENCY, mode=HaltMode.FLATTEN, actor="bob", note=None, now=later)
    assert second.halted and second.reason == "emergency_stop" and second.mode == "flatten"
    assert second.halted_at == NOW
    assert second.halted_by == "bob" and second.note is None


def test_unhalt_clears_state() -> None:
    assert unhalt(halted(), pnl_pct=D("0"), limits=LIMITS, force=False) == HaltState()
    assert HaltState().to_api()["haltMode"] is None


@pytest.mark.parametrize("pnl", [D("-3"), D("-3.01"), D("-10")])
def test_unhalt_refused_while_loss_limit_breached(pnl: Decimal) -> None:
    s = halted(HaltReason.DAILY_LOSS)
    with pytest.raises(UnhaltRefused, match="loss limit"):
        unhalt(s, pnl_pct=pnl, limits=LIMITS, force=False)
    assert unhalt(s, pnl_pct=pnl, limits=LIMITS, force=True) == HaltState()


def test_unhalt_allowed_once_limit_raised() -> None:
    s = halted(HaltReason.DAILY_LOSS)
    assert unhalt(s, pnl_pct=D("-3.5"), limits=Limits(D("5"), D("4")), force=False) == HaltState()
    assert unhalt(s, pnl_pct=D("-2.99"), limits=LIMITS, force=False) == HaltState()


# -- automatic -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pnl", "expected"),
    [
        (D("5"), HaltReason.DAILY_TARGET),
        (D("5.0001"), HaltReason.DAILY_TARGET),
        (D("4.9999"), None),
        (D("0"), None),
        (D("-2.9999"), None),
        (D("-3"), HaltReason.DAILY_LOSS),
        (D("-7"), HaltReason.DAILY_LOSS),
    ],
)
def test_automatic(pnl: Decimal, expected: str | None) -> None:
    decision = pnl_limits(HaltState(), pnl_pct=pnl, limits=LIMITS)
    assert (decision.reason if decision else None) == expected


@pytest.mark.parametrize("pnl", [D("10"), D("-10"), D("0")])
def test_automatic_nothing_when_already_halted(pnl: Decimal) -> None:
    assert pnl_limits(halted(), pnl_pct=pnl, limits=LIMITS) is None


# -- rollover --------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", list(HaltReason) + ["operator-own-reason"])
def test_clears_at_rollover_only_for_daily_limits(reason: str) -> None:
    expected = reason in ("daily_target_reached", "daily_loss_limit")
    assert clears_at_rollover(halted(reason)) is expected
    assert {"daily_target_reached", "daily_loss_limit"} == AUTO_CLEARING_REASONS


def test_not_halted_does_not_clear() -> None:
    assert clears_at_rollover(HaltState()) is False
    assert clears_at_rollover(HaltState(False, HaltReason.DAILY_TARGET)) is False


# -- allows ----------------------------------------------------------------------------------
def test_allows_everything_when_not_halted() -> None:
    for side in ("buy", "sell"):
        assert allows(HaltState(), side=side, position_qty=D("0"), qty=D("5"))


def test_halt_mode_blocks_everything() -> None:
    s = halted(mode=HaltMode.HALT)
    assert not allows(s, side="buy", position_qty=D("10"), qty=D("1"))
    assert not allows(s, side="sell", position_qty=D("10"), qty=D("1"))


@pytest.mark.parametrize("mode", [HaltMode.REDUCE_ONLY, HaltMode.FLATTEN])
def test_reduce_only_and_flatten_let_only_shrinking_sells_through(mode: str) -> None:
    s = halted(mode=mode)
    assert not allows(s, side="buy", position_qty=D("10"), qty=D("1"))
    assert allows(s, side="sell", position_qty=D("10"), qty=D("1"))
    assert allows(s, side="sell", position_qty=D("10"), qty=D("10"))
    assert not allows(s, side="sell", position_qty=D("10"), qty=D("10.00000001"))
    assert not allows(s, side="sell", position_qty=D("0"), qty=D("1"))
    assert not allows(s, side="sell", position_qty=D("10"), qty=D("0"))


def test_with_mode() -> None:
    s = with_mode(halted(), HaltMode.REDUCE_ONLY)
    assert s.mode == "reduce_only" and s.halted and s.reason == "manual" and s.halted_at == NOW


# -- Redis mirror ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "state",
    [
        HaltState(),
        HaltState(True, "daily_loss_limit", HaltMode.HALT, NOW, "auto", None),
        HaltState(True, "my own reason", HaltMode.FLATTEN, NOW, "bob", "closing out"),
        HaltState(True, "manual", HaltMode.REDUCE_ONLY, None, None, None),
    ],
)
def test_redis_round_trip(state: HaltState) -> None:
    raw = state.to_redis()
    assert all(isinstance(v, str) for v in raw.values())
    assert raw["halted"] == ("1" if state.halted else "0")
    assert from_redis(raw) == state
    # As redis-py returns it without decode_responses: bytes both sides.
    assert from_redis({k.encode(): v.encode() for k, v in raw.items()}) == state


def test_from_redis_missing_is_none() -> None:
    assert from_redis({}) is None


# -- trading day -----------------------------------------------------------------------------
def test_rollover_opens_first_day() -> None:
    d = tday.rollover(None, now=NOW, equity=D("10000"), defaults=LIMITS)
    assert d == tday.TradingDay("2026-03-14", D("10000"), LIMITS)


def test_rollover_same_utc_date_is_none() -> None:
    d = tday.TradingDay("2026-03-14", D("10000"), LIMITS)
    end_of_day = datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC)
    assert tday.rollover(d, now=end_of_day, equity=D("1"), defaults=LIMITS) is None


def test_rollover_at_utc_midnight_and_limits_do_not_carry_over() -> None:
    custom = tday.with_limits(tday.TradingDay("2026-03-14", D("10000"), LIMITS), target_pct=D("8"), loss_limit_pct=None)
    assert custom.limits == Limits(D("8"), D("3"))
    midnight = datetime(2026, 3, 15, 0, 0, 0, tzinfo=UTC)
    new = tday.rollover(custom, now=midnight, equity=D("10400"), defaults=LIMITS)
    assert new == tday.TradingDay("2026-03-15", D("10400"), LIMITS)


def test_day_is_the_utc_date() -> None:
    # 2026-03-14 23:30 in UTC-5 is already 2026-03-15 04:30 UTC.
    local = datetime(2026, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert tday.day_of(local.astimezone(UTC)) == "2026-03-15"


def test_reset_and_percent() -> None:
    d = tday.TradingDay("2026-03-14", D("10000"), LIMITS)
    assert d.percent(D("10500")) == D("5")
    r = tday.reset(d, equity=D("10500"))
    assert r.start_equity == D("10500") and r.date == d.date and r.limits == LIMITS
    assert r.percent(D("10500")) == 0


def test_with_limits() -> None:
    d = tday.TradingDay("2026-03-14", D("10000"), LIMITS)
    assert tday.with_limits(d, target_pct=None, loss_limit_pct=D("4")).limits == Limits(D("5"), D("4"))
    assert tday.with_limits(d, target_pct=D("2"), loss_limit_pct=D("1")).limits == Limits(D("2"), D("1"))
    assert tday.with_limits(d, target_pct=None, loss_limit_pct=None).limits == LIMITS


# -- severity --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "severity"),
    [
        ("daily_target_reached", "info"),
        ("daily_loss_limit", "critical"),
        ("system_error", "critical"),
        ("security_incident", "critical"),
        ("emergency_stop", "critical"),
        ("reconciliation_drift", "critical"),  # P1 (issue 15)
        ("manual", "warning"),
        ("maintenance window", "warning"),
    ],
)
def test_halt_severity(reason: str, severity: str) -> None:
    assert halt_severity(reason) == severity
