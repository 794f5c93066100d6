"""Binance's JSON shapes for the simulator's objects (what ccxt's binance parser reads)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cli_trading.exchanges.sim.engine import ZERO, Book, Fill, Order, Wallet
from cli_trading.exchanges.sim.markets import Market, fmt


def order(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_id,
        "price": fmt(o.price),
        "origQty": fmt(o.qty),
        "executedQty": fmt(o.executed),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.tif,
        "type": o.type,
        "side": o.side,
        "stopPrice": fmt(ZERO),
        "icebergQty": fmt(ZERO),
        "time": o.time_ms,
        "updateTime": o.update_ms or o.time_ms,
        "isWorking": True,
        "workingTime": o.time_ms,
        "origQuoteOrderQty": fmt(o.quote_qty),
        "selfTradePreventionMode": "NONE",
    }


def placed(o: Order, fills: list[Fill], resp_type: str) -> dict[str, Any]:
    """The answer to POST /api/v3/order: ACK, RESULT or FULL (RESULT plus the fills)."""
    ack = {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_id,
        "transactTime": o.time_ms,
    }
    if resp_type == "ACK":
        return ack
    full = order(o)
    for k in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking"):
        full.pop(k)
    out = ack | full
    if resp_type == "FULL":
        out["fills"] = [
            {
                "price": fmt(f.price),
                "qty": fmt(f.qty),
                "commission": fmt(f.commission),
                "commissionAsset": f.commission_asset,
                "tradeId": f.trade_id,
            }
            for f in fills
        ]
    return out


def cancelled(o: Order, cancel_client_id: str, now_ms: int) -> dict[str, Any]:
    body = order(o)
    for k in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking", "workingTime"):
        body.pop(k)
    return body | {"origClientOrderId": o.client_id, "clientOrderId": cancel_client_id, "transactTime": now_ms}


def trade(f: Fill) -> dict[str, Any]:
    return {
        "symbol": f.symbol,
        "id": f.trade_id,
        "orderId": f.order_id,
        "orderListId": -1,
        "price": fmt(f.price),
        "qty": fmt(f.qty),
        "quoteQty": fmt(f.quote_qty),
        "commission": fmt(f.commission),
        "commissionAsset": f.commission_asset,
        "time": f.time_ms,
        "isBuyer": f.is_buyer,
        "isMaker": f.is_maker,
        "isBestMatch": True,
    }


def account(wallet: Wallet, book: Book, now_ms: int, *, omit_zero: bool) -> dict[str, Any]:
    bps = int(book.fee_rate * 10000)
    rate = fmt(book.fee_rate)
    balances = [
        {"asset": a, "free": fmt(b.free), "locked": fmt(b.locked)}
        for a, b in sorted(wallet.items())
        if not (omit_zero and b.free == 0 and b.locked == 0)
    ]
    return {
        "makerCommission": bps,
        "takerCommission": bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(ZERO), "seller": fmt(ZERO)},
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": False,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now_ms,
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": 1,
    }


def book_ticker(m: Market, book: Book, price: Decimal) -> dict[str, Any]:
    bid, ask = book.best(m, price, "SELL"), book.best(m, price, "BUY")
    return {
        "symbol": m.symbol,
        "bidPrice": fmt(bid),
        "bidQty": fmt(m.floor_qty(book.depth / bid)),
        "askPrice": fmt(ask),
        "askQty": fmt(m.floor_qty(book.depth / ask)),
    }


def ticker_24h(
    m: Market,
    book: Book,
    ohlcv: tuple[Decimal, Decimal, Decimal, Decimal, Decimal],
    open_ms: int,
    now_ms: int,
    trades: int,
) -> dict[str, Any]:
    o, h, low, c, v = ohlcv
    change = c - o
    pct = (change / o * 100).quantize(Decimal("0.001")) if o else ZERO
    vwap = ((h + low + c) / 3).quantize(m.tick_size)
    return book_ticker(m, book, c) | {
        "priceChange": fmt(change),
        "priceChangePercent": str(pct),
        "weightedAvgPrice": fmt(vwap),
        "prevClosePrice": fmt(o),
        "lastPrice": fmt(c),
        "lastQty": fmt(m.min_qty),
        "openPrice": fmt(o),
        "highPrice": fmt(h),
        "lowPrice": fmt(low),
        "volume": fmt(v),
        "quoteVolume": fmt((v * vwap).quantize(m.tick_size)),
        "openTime": open_ms,
        "closeTime": now_ms,
        "firstId": 0 if trades else -1,
        "lastId": trades - 1 if trades else -1,
        "count": trades,
    }


def kline(
    open_ms: int, step_ms: int, ohlcv: tuple[Decimal, Decimal, Decimal, Decimal, Decimal], m: Market
) -> list[Any]:
    o, h, low, c, v = ohlcv
    quote_vol = (v * (h + low) / 2).quantize(m.tick_size)
    return [
        open_ms,
        fmt(o),
        fmt(h),
        fmt(low),
        fmt(c),
        fmt(v),
        open_ms + step_ms - 1,
        fmt(quote_vol),
        0,
        fmt((v / 2).quantize(m.step_size)),
        fmt((quote_vol / 2).quantize(m.tick_size)),
        "0",
    ]
