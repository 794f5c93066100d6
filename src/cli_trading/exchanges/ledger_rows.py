"""An order's fills as the ledger records them and as exec.status carries them. Pure.

A paper order fills at once: one fill row, trade id `order` (`ledger.WHOLE`). A live order has a
fill row per trade the exchange made, keyed by the exchange's trade id, with the fee in the quote
currency (the fee as charged is in `exchange_fills`). The rows are unique by (order id, trade
id): a trade recorded again — a partial fill seen again after a restart, the final status
repeating the partial fills — is one row."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading.contracts import FillPart, OrderMsg
from cli_trading.exchanges.base import ExecResult
from cli_trading.exchanges.orders import Fill
from cli_trading.trading.ledger import WHOLE, ZERO


def fill_row(
    m: OrderMsg, now: datetime, *, trade_id: str, qty: Decimal, price: Decimal, fee: Decimal
) -> dict[str, Any]:
    return {
        "order_id": m.orderId,
        "trade_id": trade_id,
        "ts": now,
        "day": now.date().isoformat(),
        "symbol": m.symbol,
        "side": m.side,
        "qty": qty,
        "price": price,
        "fee": fee,
    }


def trade_row(m: OrderMsg, f: Fill, now: datetime) -> dict[str, Any]:
    """The fill row of one trade at the exchange (the fee in the quote currency)."""
    return fill_row(m, now, trade_id=f.trade_id, qty=f.qty, price=f.price, fee=f.fee_quote)


def fill_rows_of(m: OrderMsg, r: ExecResult, now: datetime) -> list[dict[str, Any]]:
    """A filled order's fill rows: live, one per trade the exchange made (those recorded already
    as partial fills are left as they are by the insert); paper, the order as one fill."""
    if r.tracked is not None:
        return [trade_row(m, f, now) for f in r.tracked.fills]
    return [fill_row(m, now, trade_id=WHOLE, qty=m.qty, price=r.price or ZERO, fee=r.fee)]


def fill_parts(fills: Iterable[Fill]) -> list[FillPart]:
    """Trades as an exec.status message's `fills`."""
    return [FillPart(fillId=f.trade_id, qty=f.qty, price=f.price, fee=f.fee_quote) for f in fills]
