"""The paper engine: fills at the market price with slippage and fees, against a paper account
whose cash and holdings are a ledger (rebuilt from the fills table on start)."""

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

    async def submit(self, order: OrderRequest) -> ExecResult:
        self.received.append(Received(order.order_id, time.time(), order.symbol, order.side))
        self.ledger.mark(order.symbol, order.price)  # the order carries the latest mark
        fill = paper_fill(order.side, order.qty, order.price, slippage_bps=self.slippage_bps, fee_bps=self.fee_bps)
        why = affordable(order.side, order.qty, fill, cash=self.ledger.cash, held=self.ledger.qty_of(order.symbol))
        if why:
            return ExecResult("rejected", reason=why)
        self.ledger.apply(FillRecord(order.order_id, order.symbol, order.side, order.qty, fill.price, fill.fee))
        return ExecResult("filled", fill.price, fill.fee)

    async def close(self) -> None:
        pass
