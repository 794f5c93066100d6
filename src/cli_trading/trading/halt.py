"""Halt policy: the halt state and every decision about it, pure and clock-injected.

Where is the halt decided? Here. The orchestrator applies these decisions and mirrors the state
to Redis (for the risk manager and executor gates) and to the database (to survive restarts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.contracts import AUTO_CLEARING_REASONS, HaltMode, HaltReason, iso


@dataclass(frozen=True, slots=True)
class HaltState:
    halted: bool = False
    reason: str | None = None
    mode: str = HaltMode.HALT
    halted_at: datetime | None = None
    halted_by: str | None = None
    note: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "halted": self.halted,
            "haltReason": self.reason,
            "haltMode": self.mode if self.halted else None,
            "haltedAt": iso(self.halted_at) if self.halted_at else None,
            "haltedBy": self.halted_by,
            "haltNote": self.note,
        }

    def to_redis(self) -> dict[str, str]:
        d = {k: ("" if v is None else str(v)) for k, v in asdict(self).items()}
        d["halted"] = "1" if self.halted else "0"
        return d


@dataclass(frozen=True, slots=True)
class Limits:
    target_pct: Decimal
    loss_limit_pct: Decimal


class UnhaltRefused(Exception):
    """Plain unhalt while the day's loss limit is still breached."""


def halt(state: HaltState, *, reason: str, mode: str, actor: str, note: str | None, now: datetime) -> HaltState:
    """A halt always wins; a second halt replaces reason and mode (recorded as a transition)."""
    return HaltState(True, reason, mode, state.halted_at if state.halted else now, actor, note)


def unhalt(state: HaltState, *, pnl_pct: Decimal, limits: Limits, force: bool) -> HaltState:
    if not force and pnl_pct <= -limits.loss_limit_pct:
        raise UnhaltRefused(
            f"today's PnL is {pnl_pct:.2f}%, at or below the loss limit of -{limits.loss_limit_pct}%: "
            "raise the limit with POST /admin/pnl/limits or unhalt with force:true"
        )
    return HaltState()


def automatic(
    state: HaltState, *, pnl_pct: Decimal, limits: Limits, overridden: frozenset[str] = frozenset()
) -> str | None:
    """The automatic halt reason that today's PnL calls for, if trading is not halted yet.
    `overridden`: reasons an operator force-unhalted today; they do not fire again until rollover."""
    if state.halted:
        return None
    if pnl_pct <= -limits.loss_limit_pct and HaltReason.DAILY_LOSS not in overridden:
        return HaltReason.DAILY_LOSS
    if pnl_pct >= limits.target_pct and HaltReason.DAILY_TARGET not in overridden:
        return HaltReason.DAILY_TARGET
    return None


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


def from_redis(raw: dict[bytes, bytes] | dict[str, str]) -> HaltState | None:
    """Decode the Redis mirror; None when it is missing (fail safe: callers refuse)."""
    if not raw:
        return None
    d = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }
    return HaltState(
        halted=d.get("halted") == "1",
        reason=d.get("reason") or None,
        mode=d.get("mode") or HaltMode.HALT,
        halted_at=datetime.fromisoformat(d["halted_at"]) if d.get("halted_at") else None,
        halted_by=d.get("halted_by") or None,
        note=d.get("note") or None,
    )
