"""Live execution through ccxt: a market order with our orderId as clientOrderId, so that the
exchange itself refuses a duplicate. Thin on purpose; the exchange object is injected."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from cli_trading.exchanges.base import ExecResult, OrderRequest, Received, received_log


def ccxt_symbol(symbol: str) -> str:
    return symbol.replace("-", "/")


class CcxtExchange:
    name = "ccxt"
    settles_with_claim = False

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.received = received_log()

    @classmethod
    def create(cls, exchange_id: str, api_key: str, secret: str) -> CcxtExchange:
        import ccxt.async_support as ccxt

        klass = getattr(ccxt, exchange_id, None)
        if klass is None:
            raise ValueError(f"unknown ccxt exchange {exchange_id!r}")
        return cls(klass({"apiKey": api_key, "secret": secret, "enableRateLimit": True}))

    async def submit(self, order: OrderRequest) -> ExecResult:
        self.received.append(Received(order.order_id, time.time(), order.symbol, order.side))
        try:
            res = await self.exchange.create_order(
                ccxt_symbol(order.symbol),
                "market",
                order.side,
                float(order.qty),
                params={"clientOrderId": order.order_id},
            )
        except Exception as exc:  # noqa: BLE001 - ccxt raises many types; all mean "not filled"
            kind = type(exc).__name__
            status = "rejected" if kind in ("InsufficientFunds", "InvalidOrder", "BadSymbol") else "failed"
            return ExecResult(status, reason=f"{kind}: {str(exc)[:200]}")
        price = res.get("average") or res.get("price")
        fee = (res.get("fee") or {}).get("cost") or 0
        if res.get("status") in ("closed", "filled") or res.get("filled"):
            return ExecResult("filled", Decimal(str(price)) if price else order.price, Decimal(str(fee)))
        return ExecResult("failed", reason=f"order status {res.get('status')!r}")

    async def close(self) -> None:
        await self.exchange.close()
