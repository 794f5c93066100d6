"""The paper engine: fills at the market price with slippage and fees, against a paper account
whose cash and holdings are a ledger (rebuilt from the fills table on start).

Its effects live in the executor's transaction (the fills table is the account), so its record
of the orders that reached it does too: an order is recorded once the transaction that claimed,
filled and settled it commits (`commit_record`), and not if it rolls back — the fill is undone
then, and the redelivered order is the one that reaches the engine. With the orders table's
primary key (the claim), the record shows each order at most once, across restarts too."""

from __future__ import annotations

import time
from decimal import Decimal

from cli_trading.exchanges.base import ExecResult, OrderRequest, Received, received_log
from cli_trading.trading.fills import affordable, paper_fill
from cli_trading.trading.ledger import FillRecord, Ledger


class PaperExchange:
    name = "paper"

    def __init__(self, ledger: Ledger, *, slippage_bps: Decimal, fee_bps: Decimal) -> None:
        self.ledger = ledger
        self.slippage_bps, self.fee_bps = slippage_bps, fee_bps
        self.received = received_log()
        self.tentative: list[Received] = []  # reached the engine in a transaction not committed yet

    async def submit(self, order: OrderRequest) -> ExecResult:
        self.tentative.append(Received(order.order_id, time.time(), order.symbol, order.side))
        self.ledger.mark(order.symbol, order.price)  # the order carries the latest mark
        fill = paper_fill(order.side, order.qty, order.price, slippage_bps=self.slippage_bps, fee_bps=self.fee_bps)
        why = affordable(order.side, order.qty, fill, cash=self.ledger.cash, held=self.ledger.qty_of(order.symbol))
        if why:
            return ExecResult("rejected", reason=why)
        self.ledger.apply(FillRecord(order.order_id, order.symbol, order.side, order.qty, fill.price, fill.fee))
        return ExecResult("filled", fill.price, fill.fee)

    def commit_record(self) -> None:
        """The transaction committed: its orders reached the engine."""
        self.received.extend(self.tentative)
        self.tentative = []

    def take_tentative(self) -> list[Received]:
        """The transaction failed: its orders are not recorded (the caller records those whose
        commit landed all the same, once it can read the database)."""
        out, self.tentative = self.tentative, []
        return out

    async def close(self) -> None:
        pass
