"""The simulator's markets: symbols, the candle series behind each, Binance's filters.

Filters follow Binance spot today: PRICE_FILTER (tickSize), LOT_SIZE (stepSize, minQty),
MARKET_LOT_SIZE and NOTIONAL (minNotional, applied to market orders too). ccxt's `binance`
parser turns them into `precision` and `limits`; `check_order` refuses what Binance refuses, with
Binance's message ("Filter failure: LOT_SIZE", …)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from cli_trading.exchanges.sim.errors import BinanceError
from cli_trading.market.bars import available_symbols, load_bars

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
EIGHT = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str  # Binance id, e.g. BTCUSDT
    base: str
    quote: str
    series: str  # the candle series behind it (market/data), e.g. BTC-USD
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal = Decimal("9000000")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")

    def round_price(self, price: Decimal) -> Decimal:
        return price.quantize(self.tick_size)

    def floor_qty(self, qty: Decimal) -> Decimal:
        return (qty / self.step_size).to_integral_value(ROUND_DOWN) * self.step_size


DEFAULT_MARKETS: tuple[Market, ...] = (
    Market(
        "BTCUSDT",
        "BTC",
        "USDT",
        "BTC-USD",
        Decimal("0.01"),
        Decimal("0.00001"),
        Decimal("0.00001"),
        Decimal("9000"),
        Decimal("5"),
    ),
    Market(
        "ETHUSDT",
        "ETH",
        "USDT",
        "ETH-USD",
        Decimal("0.01"),
        Decimal("0.0001"),
        Decimal("0.0001"),
        Decimal("9000"),
        Decimal("5"),
    ),
)


def _generic(symbol: str, base: str, quote: str, series: str, price: Decimal) -> Market:
    """Filters for a series without a preset: a tick of about a millionth of the price, a lot
    worth at most about one unit of quote."""
    magnitude = price.adjusted()  # floor(log10(price))
    tick = max(EIGHT, Decimal(1).scaleb(magnitude - 6))
    step = min(Decimal(1), Decimal(1).scaleb(-(magnitude + 1)))
    return Market(symbol, base, quote, series, tick, step, step, Decimal("9000000"), Decimal("5"), min_price=tick)


def markets_for(folder: Path | None) -> tuple[Market, ...]:
    """The shipped markets, or one `<BASE>USDT` market per `<BASE>-USD[T]` series in your
    candle folder (presets for BTC and ETH, filters sized from the price for the others)."""
    if folder is None:
        return DEFAULT_MARKETS
    presets = {m.base: m for m in DEFAULT_MARKETS}
    out = []
    for series in available_symbols(folder):
        base, _, quote = series.partition("-")
        if quote not in ("USD", "USDT") or not base.isalnum():
            continue
        base = base.upper()
        if base in presets:
            out.append(replace(presets[base], series=series))
        else:
            out.append(_generic(f"{base}USDT", base, "USDT", series, load_bars(series, folder)[-1].close))
    if not out:
        raise ValueError(f"no <BASE>-USD or <BASE>-USDT candle files in {folder}")
    return tuple(out)


def assets(markets: tuple[Market, ...]) -> list[str]:
    return sorted({m.base for m in markets} | {m.quote for m in markets})


def fmt(d: Decimal) -> str:
    """Binance writes amounts with eight decimals."""
    return f"{d:.8f}"


def _filters(m: Market) -> list[dict[str, Any]]:
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fmt(m.min_price),
            "maxPrice": fmt(m.max_price),
            "tickSize": fmt(m.tick_size),
        },
        {"filterType": "LOT_SIZE", "minQty": fmt(m.min_qty), "maxQty": fmt(m.max_qty), "stepSize": fmt(m.step_size)},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": fmt(Decimal(0)),
            "maxQty": fmt(m.max_qty),
            "stepSize": fmt(Decimal(0)),
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": fmt(m.min_notional),
            "applyMinToMarket": True,
            "maxNotional": fmt(m.max_notional),
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
    ]


def symbol_info(m: Market) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _filters(m),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_MAKER"],
    }


def exchange_info(markets: tuple[Market, ...], server_ms: int, request_limit: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": request_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        ],
        "exchangeFilters": [],
        "symbols": [symbol_info(m) for m in markets],
    }


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    return step == 0 or (value / step) == (value / step).to_integral_value()


def check_price(m: Market, price: Decimal) -> None:
    if price < m.min_price or price > m.max_price or not _multiple_of(price, m.tick_size):
        raise BinanceError(-1013, "Filter failure: PRICE_FILTER")


def check_qty(m: Market, qty: Decimal) -> None:
    if qty < m.min_qty or qty > m.max_qty or not _multiple_of(qty, m.step_size):
        raise BinanceError(-1013, "Filter failure: LOT_SIZE")


def check_notional(m: Market, qty: Decimal, price: Decimal, *, market_order: bool) -> None:
    notional = qty * price
    if notional < m.min_notional or (not market_order and notional > m.max_notional):
        raise BinanceError(-1013, "Filter failure: NOTIONAL")
