"""Where is the halt decided? Here: every halt decision, from facts to a decision, pure (no I/O;
the clock's reading is one of the facts). `service.py` applies what these functions decide.

- transitions: `halt`, `unhalt` (refused while the day's loss limit is breached, unless forced),
  `clears_at_rollover`, and `allows` (which orders may pass in each mode);
- automatic halts, each `... -> Decision | None`: `pnl_limits`, `execution_failures`,
  `auth_spike`, `dead_letters`, `database_outage`, `reconciliation_drift`. None of them replaces a
  halt in force: the operator's reason (or the first cause) stays on record;
- `flatten_round`: flatten mode closing what is still open, a few rounds at most;
- `at_start` and `flag_is_stale`: which state the live flag must show after a restart and
  while running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from cli_trading.contracts import AUTO_CLEARING_REASONS, HaltMode, HaltReason
from cli_trading.halt.state import HaltState, Limits

SYSTEM = "system"
FLATTEN_ROUNDS = 5  # flatten mode's closing rounds for positions still open after the first


@dataclass(frozen=True, slots=True)
class Decision:
    """An automatic halt to apply: why, in which mode, with a note for the operator."""

    reason: str
    note: str
    mode: str = HaltMode.HALT
    source: str | None = None
    actor: str = SYSTEM


class UnhaltRefused(Exception):
    """Plain unhalt while the day's loss limit is still breached."""


# -- transitions --------------------------------------------------------------------------------
def halt(state: HaltState, *, reason: str, mode: str, actor: str, note: str | None, now: datetime) -> HaltState:
    """A halt always wins; a second halt replaces reason and mode (recorded as a transition)."""
    return HaltState(True, reason, mode, state.halted_at if state.halted else now, actor, note)


def unhalt(state: HaltState, *, pnl_pct: Decimal, limits: Limits, force: bool) -> HaltState:
    """The forced-unhalt check: a plain unhalt is refused while today's PnL is at or below the
    loss limit; the operator raises the limit or forces it."""
    if not force and pnl_pct <= -limits.loss_limit_pct:
        raise UnhaltRefused(
            f"today's PnL is {pnl_pct:.2f}%, at or below the loss limit of -{limits.loss_limit_pct}%: "
            "raise the limit with POST /admin/pnl/limits or unhalt with force:true"
        )
    return HaltState()


def overrides(state: HaltState, *, force: bool) -> str | None:
    """The automatic reason a forced unhalt overrides for the rest of the day (it must not fire
    again until rollover: the operator has accepted today's PnL)."""
    return state.reason if force and state.reason in AUTO_CLEARING_REASONS else None


def clears_at_rollover(state: HaltState) -> bool:
    return state.halted and state.reason in AUTO_CLEARING_REASONS


def allows(state: HaltState, *, side: str, position_qty: Decimal, qty: Decimal) -> bool:
    """May an order pass while in this state? reduce_only and flatten let through only orders
    that shrink a position (spot: a sell no larger than the holding)."""
    if not state.halted:
        return True
    if state.mode == HaltMode.HALT:
        return False
    return side == "sell" and 0 < qty <= position_qty


def with_mode(state: HaltState, mode: str) -> HaltState:
    return replace(state, mode=mode)


# -- automatic halts ------------------------------------------------------------------------------
def pnl_limits(
    state: HaltState, *, pnl_pct: Decimal, limits: Limits, overridden: frozenset[str] = frozenset()
) -> Decision | None:
    """Today's PnL at the loss limit or the target. `overridden`: reasons an operator
    force-unhalted today; they do not fire again until rollover."""
    if state.halted:
        return None
    if pnl_pct <= -limits.loss_limit_pct and HaltReason.DAILY_LOSS not in overridden:
        reason = HaltReason.DAILY_LOSS
    elif pnl_pct >= limits.target_pct and HaltReason.DAILY_TARGET not in overridden:
        reason = HaltReason.DAILY_TARGET
    else:
        return None
    pct = pnl_pct.quantize(Decimal("0.01"))
    note = f"PnL {pct}% against target {limits.target_pct}% / loss limit -{limits.loss_limit_pct}%"
    return Decision(reason, note)


def execution_failures(state: HaltState, *, consecutive: int, threshold: int) -> Decision | None:
    """The executor failed this many orders in a row: the system cannot trade safely."""
    if state.halted or consecutive < threshold:
        return None
    return Decision(HaltReason.SYSTEM_ERROR, f"{consecutive} consecutive execution failures")


def auth_spike(state: HaltState, *, enabled: bool, source: str) -> Decision | None:
    """A spike of failed admin authentications (the caller counts them) halts when configured."""
    if state.halted or not enabled:
        return None
    return Decision(HaltReason.SECURITY, "failed authentication spike", source=source)


def dead_letters(state: HaltState, *, new: Mapping[str, int]) -> Decision | None:
    """Messages dead-lettered on the order path since the last look (`new`: count per DLQ)."""
    if state.halted:
        return None
    for dlq, n in new.items():
        if n > 0:
            return Decision(HaltReason.SYSTEM_ERROR, f"{n} message(s) dead-lettered on {dlq}")
    return None


def database_outage(
    state: HaltState, *, down_since: float | None, now: float, limit_s: float, orders_in_flight: bool
) -> Decision | None:
    """The database unreachable for `limit_s` (monotonic seconds) while orders are on their way:
    their fills cannot be recorded."""
    if state.halted or down_since is None or not orders_in_flight:
        return None
    down_for = now - down_since
    if down_for < limit_s:
        return None
    return Decision(HaltReason.SYSTEM_ERROR, f"database unreachable for {down_for:.0f}s with orders in flight")


@dataclass(frozen=True, slots=True)
class Drift:
    """One reconciliation with the exchange: the drift of balances valued in the quote currency,
    open orders at the exchange the ledger does not know, and what drifted (for the note)."""

    value: Decimal
    unknown_orders: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DriftLimits:
    """`value`: the drift allowed (RECONCILE_DRIFT_LIMIT); `confirmations`: consecutive checks
    past it before trading halts. Not for our own orders: the desk reads the exchange and the
    ledger at one moment (`Desk.books`), so an order between its fill and our record of it is never
    drift. For the exchange's side: its balances and its trade list are separate requests, answered
    from no single snapshot (a real exchange may count a trade in the balances before its trade
    list shows it), and the desk reads the balances again at most three times while a resting
    order keeps filling. Such a reading is gone at the next check; a real drift stays."""

    value: Decimal
    confirmations: int = 2


def drift_over(drift: Drift, limits: DriftLimits) -> bool:
    """One check past the limit (the caller counts consecutive ones)."""
    return drift.value > limits.value or drift.unknown_orders > 0


def reconciliation_drift(state: HaltState, *, drift: Drift, limits: DriftLimits, checks_over: int) -> Decision | None:
    """The exchange disagrees with the ledger past the limit on `confirmations` consecutive
    checks (`checks_over`, this one included): halt, P1."""
    if state.halted or not drift_over(drift, limits) or checks_over < limits.confirmations:
        return None
    parts = [drift.detail] if drift.detail else []
    if drift.unknown_orders:
        parts.append(f"{drift.unknown_orders} open order(s) unknown to the ledger")
    note = f"drift {drift.value} (limit {limits.value})" + (": " + "; ".join(parts) if parts else "")
    return Decision(HaltReason.RECONCILIATION_DRIFT, note)


# -- flatten --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlattenRounds:
    """Closing rounds spent on the halt identified by `key` (its time and reason)."""

    key: tuple[datetime | None, str | None] | None = None
    done: int = 0


FlattenStep = Literal["close", "give_up"]


def flatten_round(
    state: HaltState,
    rounds: FlattenRounds,
    *,
    orders_in_flight: bool,
    positions_open: bool,
    max_rounds: int = FLATTEN_ROUNDS,
) -> tuple[FlattenRounds, FlattenStep | None]:
    """Flatten mode closes what is still open once nothing is on its way: a position opened by
    an order in flight at the halt, or one the first flatten order could not close. `max_rounds`
    at most, then "give_up" once (dust under the exchange's minimum is the operator's)."""
    if not (state.halted and state.mode == HaltMode.FLATTEN) or orders_in_flight or not positions_open:
        return rounds, None
    key = (state.halted_at, state.reason)
    done = rounds.done + 1 if rounds.key == key else 1
    step: FlattenStep | None = "close" if done <= max_rounds else "give_up" if done == max_rounds + 1 else None
    return FlattenRounds(key, done), step


# -- the live flag --------------------------------------------------------------------------------
def at_start(saved: HaltState, *, saved_at: datetime | None, live: HaltState | None) -> HaltState:
    """The state to publish at start, from the database's (`saved`, last written at `saved_at`)
    and what Redis holds (`live`). A halt in Redis newer than the database's last transition is
    kept: a halt is answered once its flag is set and recorded just after, so a crash in between
    leaves it only in Redis. A halt is never undone by a restart."""
    if (
        live is not None
        and live.halted
        and not saved.halted
        and live.halted_at is not None
        and (saved_at is None or live.halted_at > saved_at)
    ):
        return live
    return saved


def flag_is_stale(state: HaltState, live: HaltState | None) -> bool:
    """Redis lost the flag (flush, restart) or shows another state: publish it again."""
    return live is None or live.halted != state.halted or live.mode != state.mode
