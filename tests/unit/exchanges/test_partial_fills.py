"""Each partial fill is a fill of its own (issue 15): the fills an exec.status message carries, a
ledger applying each once by (order id, fill id), the trades of an open order not recorded yet,
and the executor's fill rows and status messages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import orjson

from cli_trading.agents.executor import TradeExecutor
from cli_trading.busops import encode
from cli_trading.contracts import OrderMsg, StatusMsg, status_id
from cli_trading.exchanges.base import ExecResult
from cli_trading.exchanges.ccxt_adapter import as_result
from cli_trading.exchanges.ledger_rows import fill_parts, fill_rows_of
from cli_trading.exchanges.orders import Fill, Tracked, unrecorded
from cli_trading.trading.ledger import WHOLE, FillRecord, Ledger, replay

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ORDER = OrderMsg.model_validate(
    {"orderId": "ord-p", "requestId": "p", "symbol": "BTC-USDT", "side": "buy", "qty": "0.3", "type": "limit"}
)


def trade(tid: str, qty: str, price: str, fee: str = "0.1") -> Fill:
    return Fill(tid, D(qty), D(price), D(fee), "USDT", D(fee))


def fills_of_status(p: dict) -> list[FillRecord]:
    """What a consumer applies of a message as it comes off the stream."""
    return StatusMsg.model_validate(p).ledger_fills()


def wire(msg: StatusMsg) -> dict:
    """A message as a consumer decodes it from the stream (Decimals as strings)."""
    return orjson.loads(encode(msg))


def test_a_message_without_fills_is_the_order_as_one_fill() -> None:
    p = {"orderId": "o1", "requestId": "r1", "status": "filled", "symbol": "BTC-USD", "side": "buy", "qty": "2",
         "price": "10", "fee": "1"}
    assert fills_of_status(p) == [FillRecord("o1", "BTC-USD", "buy", D(2), D(10), D(1), WHOLE)]
    assert fills_of_status({**p, "status": "pending"}) == []
    assert fills_of_status({**p, "status": "rejected"}) == []


def test_partial_fills_are_applied_once_each_whatever_message_carries_them() -> None:
    first, second = trade("11", "0.1", "100"), trade("12", "0.2", "101")
    so_far = ExecResult("pending", D(100), D("0.1"), "partially_filled", Tracked("ord-p"))
    pending = TradeExecutor._status(ORDER, so_far)
    pending.fills = fill_parts([first])
    t = Tracked("ord-p", "cancelled", "x1", D("0.3"), (first, second))
    final = TradeExecutor._status(ORDER, as_result(t))
    assert (final.status, final.qty, final.reason) == ("filled", D("0.3"), "cancelled after a partial fill of 0.3")
    ledger = Ledger(D(1000))
    applied = [ledger.apply(f) for msg in (pending, pending, final, final) for f in fills_of_status(wire(msg))]
    assert applied == [True, False, False, True, False, False]  # each trade once
    assert ledger.qty_of("BTC-USDT") == D("0.3")
    assert ledger.cash == D(1000) - D("0.1") * 100 - D("0.2") * 101 - D("0.2")
    # the same as a replay of the fills table's rows
    rows = fill_rows_of(ORDER, as_result(t), NOW)
    again = replay(D(1000), [_record(r) for r in rows], {})
    assert (again.cash, again.qty_of("BTC-USDT")) == (ledger.cash, ledger.qty_of("BTC-USDT"))


def test_a_paper_fill_is_one_row_and_a_message_without_fills() -> None:
    r = ExecResult("filled", D(100), D("0.3"))
    [row] = fill_rows_of(ORDER, r, NOW)
    assert row["trade_id"] == WHOLE and row["qty"] == D("0.3") and row["day"] == "2026-11-30"
    msg = wire(TradeExecutor._status(ORDER, r))
    assert "fills" not in msg  # the paper message is as it was
    assert fills_of_status(msg) == [_record(row)]


def test_live_fill_rows_are_the_exchange_trades_with_the_fee_in_the_quote() -> None:
    in_base = Fill("12", D("0.2"), D(101), D("0.0001"), "BTC", D("0.0101"))
    t = Tracked("ord-p", "filled", "x1", D("0.3"), (trade("11", "0.1", "100"), in_base))
    rows = fill_rows_of(ORDER, as_result(t), NOW)
    assert [(r["trade_id"], r["qty"], r["price"], r["fee"]) for r in rows] == [
        ("11", D("0.1"), D(100), D("0.1")),
        ("12", D("0.2"), D(101), D("0.0101")),
    ]


def test_unrecorded_trades_in_the_exchange_order() -> None:
    t = Tracked("o", "partially_filled", fills=(trade("3", "1", "1"), trade("1", "1", "1"), trade("2", "1", "1")))
    assert [f.trade_id for f in unrecorded(t, frozenset())] == ["3", "1", "2"]
    assert [f.trade_id for f in unrecorded(t, {"1", "3"})] == ["2"]
    assert unrecorded(t, {"1", "2", "3"}) == ()


def _record(row: dict) -> FillRecord:
    r = row
    return FillRecord(r["order_id"], r["symbol"], r["side"], r["qty"], r["price"], r["fee"], r["trade_id"])


def test_a_partial_fill_message_never_makes_the_final_status_a_repeat() -> None:
    """The exec.status consumers drop a message whose idempotency key (statusId) they have seen:
    a pending message with partial fills, or without any (an adopted order's announcement), must
    not take the key of the order's final status."""
    first, second = fill_parts([trade("7", "0.1", "1")]), fill_parts([trade("8", "0.1", "1")])
    keys = [status_id("o1", first), status_id("o1", second), status_id("o1", []), status_id("o1")]
    assert len(set(keys)) == 4 and keys[3] == "o1"
    assert TradeExecutor._status(ORDER, ExecResult("filled", D(1), D(0))).statusId == ORDER.orderId
