"""Bounded memory in the ledger: the keys it remembers keep a bound, and it still refuses a recent
repeat."""

from __future__ import annotations

from decimal import Decimal

from cli_trading.trading.ledger import FillRecord, Ledger, RecentKeys


def test_recent_keys_forget_the_oldest_beyond_capacity() -> None:
    keys = RecentKeys(3)
    for k in "abcd":
        keys.add(k)
    keys.add("d")  # a repeat takes no room
    assert "a" not in keys and all(k in keys for k in "bcd") and len(keys) == 3


def test_the_ledger_still_refuses_a_recent_repeat() -> None:
    ledger = Ledger(Decimal("1000"))
    fill = FillRecord("o1", "BTC-USD", "buy", Decimal("1"), Decimal("10"), Decimal("0"))
    assert ledger.apply(fill) and not ledger.apply(fill)
    assert ledger.cash == Decimal("990")
