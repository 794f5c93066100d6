"""The result type shared by the health check and the security audit, and the thresholds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warning", "critical"]
RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


@dataclass
class Check:
    name: str
    category: str
    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


STATUSES: tuple[Status, ...] = ("ok", "warning", "critical")


def worst(statuses: Sequence[str]) -> Status:
    top = max((RANK[s] for s in statuses), default=0)
    return STATUSES[top]


def exit_code(status: str) -> int:
    return RANK[status]


def grade(value: float, warn: float, crit: float) -> Status:
    """ok below `warn`, warning from `warn`, critical from `crit` (higher is worse)."""
    if value >= crit:
        return "critical"
    return "warning" if value >= warn else "ok"


@dataclass(frozen=True)
class Thresholds:
    """Every limit the health check grades against; each can be set in the environment."""

    pending_warn: int = 100
    pending_crit: int = 1000
    pending_age_warn_s: float = 60
    pending_age_crit_s: float = 300
    dlq_warn: int = 1
    dlq_crit: int = 50
    redis_mem_warn: float = 0.75
    redis_mem_crit: float = 0.90
    redis_clients_warn: float = 0.75
    redis_clients_crit: float = 0.90
    pg_conn_warn: float = 0.75
    pg_conn_crit: float = 0.90
    disk_free_warn: float = 0.15
    disk_free_crit: float = 0.05
    mem_avail_warn: float = 0.10
    mem_avail_crit: float = 0.05
    backup_age_warn_h: float = 26
    backup_age_crit_h: float = 72
    pnl_loss_warn_ratio: float = 0.8

    @classmethod
    def from_env(cls) -> Thresholds:
        kw: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = os.environ.get(f"HEALTH_{name.upper()}")
            if raw:
                kw[name] = type(f.default)(float(raw)) if isinstance(f.default, int) else float(raw)
        return cls(**kw)
