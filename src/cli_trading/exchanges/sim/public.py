"""Binance's public market-data endpoints, answered from the simulator's price path."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from cli_trading.exchanges.sim import views
from cli_trading.exchanges.sim.errors import BinanceError, bad_param, bad_value
from cli_trading.exchanges.sim.markets import exchange_info, fmt
from cli_trading.exchanges.sim.tape import interval_ms, kline_opens

if TYPE_CHECKING:
    from cli_trading.exchanges.sim.exchange import SimExchange

router = APIRouter()


def _sim(request: Request) -> SimExchange:
    sim: SimExchange = request.app.state.rt.sim
    return sim


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_value(name) from None


def _symbols(request: Request, sim: SimExchange) -> list[str] | None:
    """`symbol=X` or `symbols=["X","Y"]` (checked), or None for all."""
    one, many = request.query_params.get("symbol"), request.query_params.get("symbols")
    if one:
        return [sim.market(one).symbol]
    if many:
        try:
            names = json.loads(many)
        except ValueError:
            raise bad_value("symbols") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad_value("symbols")
        return [sim.market(n).symbol for n in names]
    return None


def _one_or_all(request: Request, sim: SimExchange, make: Any) -> Any:
    picked = _symbols(request, sim)
    if request.query_params.get("symbol"):
        return make(picked[0]) if picked else None
    return [make(s) for s in (picked or list(sim.markets))]


@router.get("/api/v3/ping")
async def ping() -> dict[str, Any]:
    return {}


@router.get("/api/v3/time")
async def server_time() -> dict[str, int]:
    return {"serverTime": int(time.time() * 1000)}


@router.get("/sapi/v1/system/status")
async def system_status() -> dict[str, Any]:
    return {"status": 0, "msg": "normal"}


@router.get("/api/v3/exchangeInfo")
async def info(request: Request) -> dict[str, Any]:
    sim = _sim(request)
    picked = _symbols(request, sim)
    markets = tuple(sim.markets[s] for s in picked) if picked else tuple(sim.markets.values())
    return exchange_info(markets, int(time.time() * 1000), sim.config.request_limit)


@router.get("/api/v3/klines")
@router.get("/api/v3/uiKlines")
async def klines(request: Request) -> list[list[Any]]:
    sim = _sim(request)
    m = sim.market(request.query_params.get("symbol"))
    name = request.query_params.get("interval")
    if not name:
        raise bad_param("interval")
    step = interval_ms(name)
    if step is None:
        raise BinanceError(-1120, "Invalid interval.")
    limit = max(1, min(_int(request, "limit", 500) or 500, 1000))
    now_ms = int(time.time() * 1000)
    rows = []
    for t in kline_opens(step, now_ms, _int(request, "startTime"), _int(request, "endTime"), limit):
        ohlcv = sim.window(m.symbol, t / 1000, min(t + step, now_ms) / 1000)
        rows.append(views.kline(t, step, ohlcv, m))
    return rows


@router.get("/api/v3/ticker/24hr")
@router.get("/api/v3/ticker")
async def ticker_24h(request: Request) -> Any:
    sim = _sim(request)
    now = time.time()
    now_ms, open_ms = int(now * 1000), int(now * 1000) - 86_400_000

    def make(symbol: str) -> dict[str, Any]:
        trades = sum(1 for f in sim.fills if f.symbol == symbol and f.time_ms >= open_ms)
        return views.ticker_24h(
            sim.markets[symbol], sim.book, sim.window(symbol, now - 86400, now), open_ms, now_ms, trades
        )

    return _one_or_all(request, sim, make)


@router.get("/api/v3/ticker/price")
async def ticker_price(request: Request) -> Any:
    sim = _sim(request)
    now = time.time()
    return _one_or_all(request, sim, lambda s: {"symbol": s, "price": fmt(sim.price(s, now))})


@router.get("/api/v3/ticker/bookTicker")
async def book_ticker(request: Request) -> Any:
    sim = _sim(request)
    now = time.time()
    return _one_or_all(request, sim, lambda s: views.book_ticker(sim.markets[s], sim.book, sim.price(s, now)))


@router.get("/api/v3/avgPrice")
async def avg_price(request: Request) -> dict[str, Any]:
    sim = _sim(request)
    m = sim.market(request.query_params.get("symbol"))
    return {"mins": 5, "price": fmt(sim.price(m.symbol, time.time())), "closeTime": int(time.time() * 1000)}


@router.get("/api/v3/depth")
async def depth(request: Request) -> dict[str, Any]:
    sim = _sim(request)
    m = sim.market(request.query_params.get("symbol"))
    limit = max(1, min(_int(request, "limit", 100) or 100, 5000))
    price = sim.price(m.symbol, time.time())

    def side(s: str) -> list[list[str]]:
        levels = sim.book.levels(m, price, s)
        return [[fmt(p), fmt(q)] for _, (p, q) in zip(range(limit), levels, strict=False)]

    return {"lastUpdateId": int(time.time() * 1000), "bids": side("SELL"), "asks": side("BUY")}


@router.get("/api/v3/trades")
async def recent_trades(request: Request) -> list[dict[str, Any]]:
    sim = _sim(request)
    m = sim.market(request.query_params.get("symbol"))
    limit = max(1, min(_int(request, "limit", 500) or 500, 1000))
    fills = [f for f in sim.fills if f.symbol == m.symbol][-limit:]
    return [
        {
            "id": f.trade_id,
            "price": fmt(f.price),
            "qty": fmt(f.qty),
            "quoteQty": fmt(f.quote_qty),
            "time": f.time_ms,
            "isBuyerMaker": not f.is_buyer,
            "isBestMatch": True,
        }
        for f in fills
    ]


@router.get("/fapi/v1/exchangeInfo")
@router.get("/dapi/v1/exchangeInfo")
async def no_derivatives() -> dict[str, Any]:
    """Spot only: ccxt's default load_markets also asks for futures markets; there are none."""
    return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": []}
