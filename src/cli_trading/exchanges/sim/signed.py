"""Binance's signed (USER_DATA / TRADE) endpoints: orders, account, trades, and the `/sapi/`
reads ccxt makes when asked for currencies or trading fees."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from cli_trading.exchanges.sim import views
from cli_trading.exchanges.sim.auth import verify
from cli_trading.exchanges.sim.markets import assets, fmt

if TYPE_CHECKING:
    from cli_trading.exchanges.sim.exchange import SimExchange

router = APIRouter()


async def _signed(request: Request) -> tuple[SimExchange, dict[str, str]]:
    sim: SimExchange = request.app.state.rt.sim
    body = (await request.body()).decode("utf-8", errors="replace")
    params = verify(
        header=request.headers.get("X-MBX-APIKEY"),
        query=request.scope["query_string"].decode("latin-1"),
        body=body,
        now_ms=int(time.time() * 1000),
        api_key=sim.config.api_key,
        secret=sim.config.api_secret,
    )
    return sim, params


@router.post("/api/v3/order")
async def new_order(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    order, fills = sim.place(params, time.time())
    default = "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
    resp_type = params.get("newOrderRespType") or default
    return views.placed(order, fills, resp_type if resp_type in ("ACK", "RESULT", "FULL") else default)


@router.post("/api/v3/order/test")
async def test_order(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    sim.prepare(params, time.time())
    return {}


@router.get("/api/v3/order")
async def get_order(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    return views.order(sim.find(params))


@router.delete("/api/v3/order")
async def cancel_order(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    return sim.cancel(params, time.time())


@router.get("/api/v3/openOrders")
async def open_orders(request: Request) -> list[dict[str, Any]]:
    sim, params = await _signed(request)
    return [views.order(o) for o in sim.open_orders(params.get("symbol"))]


@router.delete("/api/v3/openOrders")
async def cancel_open_orders(request: Request) -> list[dict[str, Any]]:
    sim, params = await _signed(request)
    return sim.cancel_all(params, time.time())


@router.get("/api/v3/allOrders")
async def all_orders(request: Request) -> list[dict[str, Any]]:
    sim, params = await _signed(request)
    return [views.order(o) for o in sim.all_orders(params)]


@router.get("/api/v3/myTrades")
async def my_trades(request: Request) -> list[dict[str, Any]]:
    sim, params = await _signed(request)
    return [views.trade(f) for f in sim.my_trades(params)]


@router.get("/api/v3/account")
async def account(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    omit = params.get("omitZeroBalances", "false").lower() == "true"
    return views.account(sim.wallet, sim.book, int(time.time() * 1000), omit_zero=omit)


@router.get("/api/v3/account/commission")
async def commission(request: Request) -> dict[str, Any]:
    sim, params = await _signed(request)
    m = sim.market(params.get("symbol"))
    rate, zero = fmt(sim.book.fee_rate), fmt(sim.book.fee_rate * 0)
    return {
        "symbol": m.symbol,
        "standardCommission": {"maker": rate, "taker": rate, "buyer": zero, "seller": zero},
        "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
        "discount": {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB", "discount": zero},
    }


@router.get("/sapi/v1/asset/tradeFee")
async def trade_fee(request: Request) -> list[dict[str, Any]]:
    sim, params = await _signed(request)
    picked = [sim.market(params["symbol"])] if params.get("symbol") else list(sim.markets.values())
    rate = fmt(sim.book.fee_rate)
    return [{"symbol": m.symbol, "makerCommission": rate, "takerCommission": rate} for m in picked]


@router.get("/sapi/v1/capital/config/getall")
async def currencies(request: Request) -> list[dict[str, Any]]:
    """What ccxt's fetch_currencies reads (load_markets calls it unless fetchCurrencies is off):
    the assets, deposits and withdrawals disabled (a rehearsal moves no money in or out)."""
    sim, _ = await _signed(request)
    out = []
    for a in assets(tuple(sim.markets.values())):
        bal = sim.wallet.get(a)
        out.append(
            {
                "coin": a,
                "name": a,
                "depositAllEnable": False,
                "withdrawAllEnable": False,
                "trading": True,
                "free": fmt(bal.free) if bal else fmt(sim.book.fee_rate * 0),
                "locked": fmt(bal.locked) if bal else fmt(sim.book.fee_rate * 0),
                "freeze": "0",
                "withdrawing": "0",
                "ipoing": "0",
                "ipoable": "0",
                "storage": "0",
                "isLegalMoney": False,
                "networkList": [
                    {
                        "network": a,
                        "coin": a,
                        "name": a,
                        "isDefault": True,
                        "depositEnable": False,
                        "withdrawEnable": False,
                        "withdrawFee": "0",
                        "withdrawMin": "0",
                        "withdrawMax": "0",
                        "withdrawIntegerMultiple": "0.00000001",
                        "minConfirm": 1,
                        "unLockConfirm": 0,
                        "depositDust": "0.00000001",
                        "busy": False,
                    }
                ],
            }
        )
    return out


@router.get("/sapi/v1/margin/allPairs")
@router.get("/sapi/v1/margin/isolated/allPairs")
async def margin_pairs(request: Request) -> list[dict[str, Any]]:
    """ccxt's load_markets asks for margin pairs when it holds credentials: none, spot only."""
    await _signed(request)
    return []
