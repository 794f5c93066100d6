"""Bounded memory in the exchange adapters: their record of received orders keeps a bound."""

from __future__ import annotations

from cli_trading.exchanges.base import RECEIVED_KEEP, Received, received_log


def test_the_adapter_record_is_bounded() -> None:
    log = received_log()
    for i in range(RECEIVED_KEEP + 10):
        log.append(Received(f"o{i}", float(i), "BTC-USD", "buy"))
    assert len(log) == RECEIVED_KEEP and log[0].order_id == "o10"
