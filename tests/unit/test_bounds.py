"""Bounded memory: what grows with traffic keeps a bound."""

from __future__ import annotations

from decimal import Decimal

from cli_trading.exchanges.base import RECEIVED_KEEP, Received, received_log
from cli_trading.streamops import lowest_floor, parse_id
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


def test_the_adapter_record_is_bounded() -> None:
    log = received_log()
    for i in range(RECEIVED_KEEP + 10):
        log.append(Received(f"o{i}", float(i), "BTC-USD", "buy"))
    assert len(log) == RECEIVED_KEEP and log[0].order_id == "o10"


def test_the_trim_floor_is_the_oldest_entry_any_group_still_owes() -> None:
    assert lowest_floor([]) is None
    assert parse_id(b"1700-3") == (1700, 3) and parse_id("5") == (5, 0)
    # group A read up to 90, nothing pending; group B read up to 100 but 40 is still pending
    assert lowest_floor([((90, 0), None), ((100, 0), (40, 1))]) == (40, 1)
    # a group that never read anything holds everything
    assert lowest_floor([((0, 0), None), ((100, 0), None)]) == (0, 0)
