"""The analyst's parts wired from the settings (agents/analyst.py `wire_analyst`, its feed from
`wire_feed`): no service needed (nothing connects until the feed is read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_trading.agents.analyst import WINDOW, wire_analyst, wire_feed
from cli_trading.config import Settings
from cli_trading.market.ccxt_feed import CcxtFeed
from cli_trading.market.replay import ReplayFeed
from cli_trading.trading.strategies import TrendFollowing
from tests.support import services

NO_REDIS: Any = object()  # never used until the stepper waits
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_replay_at_the_configured_speed_without_a_stepper() -> None:
    feed = wire_feed(Settings(market_feed="replay", replay_step=False, speed=60.0), NO_REDIS)
    assert isinstance(feed.source, ReplayFeed) and feed.stepper is None and feed.exchange is None
    assert feed.source.speed == 60.0 and feed.source.after_step is None


def test_step_mode_replays_as_fast_as_the_pipeline_settles() -> None:
    feed = wire_feed(Settings(market_feed="replay", replay_step=True), NO_REDIS)
    assert isinstance(feed.source, ReplayFeed) and feed.stepper is not None
    assert feed.source.speed == 0 and feed.source.after_step == feed.stepper.settle
    assert feed.stepper.redis is NO_REDIS and feed.exchange is None


async def test_ccxt_candles_keep_their_exchange_to_close() -> None:
    feed = wire_feed(Settings(market_feed="ccxt", exchange_id="binance"), NO_REDIS)
    try:
        assert isinstance(feed.source, CcxtFeed) and feed.stepper is None
        assert feed.exchange is not None and feed.source.exchange is feed.exchange
    finally:
        await feed.exchange.close()


async def test_live_candles_keep_to_their_share_of_the_exchange_ceiling() -> None:
    """Live, the trade executor asks the same exchange: the feed is paced under its 20 % of
    EXCHANGE_MAX_RPS (ccxt's rateLimit is the gap in ms); on paper it has all of it."""
    for mode, gap_ms in (("live", 500.0), ("paper", 100.0)):
        keys = {"exchange_api_key": "k", "exchange_api_secret": "s"} if mode == "live" else {}
        s = Settings(market_feed="ccxt", exchange_id="binance", exchange_max_rps=10, trading_mode=mode, **keys)
        feed = wire_feed(s, NO_REDIS)
        try:
            assert feed.exchange.rateLimit == gap_ms, mode
        finally:
            await feed.exchange.close()


def test_the_analyst_has_each_symbols_strategies_and_its_feed(tmp_path: Path) -> None:
    (tmp_path / "strategies.yaml").write_text(
        "strategies:\n  - name: trend\n    symbols: ['ETH-USD']\n    params: {fast: 5, slow: 9}\n"
    )
    s = Settings(config_dir=tmp_path, symbols="BTC-USD,ETH-USD", market_feed="replay", replay_step=False)
    parts = wire_analyst(services.offline(s, name="market-analyst", redis=NO_REDIS, now=NOW))
    assert [e.name for e in parts.config.strategies] == ["trend"]  # the configuration folder's file
    assert set(parts.models["ETH-USD"]) == {"trend"} and parts.models["BTC-USD"] == {}
    trend = parts.models["ETH-USD"]["trend"]
    assert isinstance(trend, TrendFollowing) and (trend.params.fast, trend.params.slow) == (5, 9)
    assert parts.last == {"BTC-USD": {}, "ETH-USD": {}}
    assert set(parts.windows) == set(s.symbol_list)
    assert all(w.maxlen == WINDOW and not w for w in parts.windows.values())
    assert isinstance(parts.feed.source, ReplayFeed) and parts.feed.source.symbols == s.symbol_list
