"""The analyst's feed wired from the settings (agents/analyst.py `wire_feed`): no service needed
(nothing connects until the feed is read)."""

from __future__ import annotations

from typing import Any

from cli_trading.agents.analyst import wire_feed
from cli_trading.config import Settings
from cli_trading.market.ccxt_feed import CcxtFeed
from cli_trading.market.replay import ReplayFeed

NO_REDIS: Any = object()  # never used until the stepper waits


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
