"""The halt state, as the orchestrator holds it, Redis mirrors it and the database keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.contracts import HaltMode, iso


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
    """The day's PnL limits, both positive percentages."""

    target_pct: Decimal
    loss_limit_pct: Decimal


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
