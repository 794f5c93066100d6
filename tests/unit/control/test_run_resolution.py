"""What becomes of a run found open after a crash (control/runs.py `resolve`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from cli_trading.control.runs import Run, resolve

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
