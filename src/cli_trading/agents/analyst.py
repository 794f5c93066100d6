"""market-analyst (7003): owns the market data feed (replay of shipped candles, or ccxt),
publishes every bar on market.bars, and answers analyze commands with a signal from the
configured strategies."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.bus import Delivery, MessageResult, PoisonMessage
from cli_trading.config import Settings
from cli_trading.contracts import AnalyzeCommand, BarMsg, Command, Group, SignalMsg, Stream
from cli_trading.market.bars import Bar
from cli_trading.market.ccxt_feed import CcxtFeed
from cli_trading.market.replay import ReplayFeed
from cli_trading.market.stepper import BARS_READ, Stepper
from cli_trading.trading.strategies import Candle, Signal, Strategy, build_strategy
from cli_trading.trading.strategy_config import StrategyFile, load_strategy_config

WINDOW = 300


COMMAND: TypeAdapter[Command] = TypeAdapter(Command)


@dataclass(frozen=True)
class Feed:
    """Where the bars come from: the replay of candle files (with its stepper in step mode), or
    ccxt's public candles (with the exchange object, closed on stop)."""

    source: ReplayFeed | CcxtFeed
    stepper: Stepper | None = None
    exchange: Any = None


def wire_feed(s: Settings, redis: Any) -> Feed:
    """The analyst's feed, from the settings (MARKET_FEED, REPLAY_STEP, ...)."""
    if s.market_feed == "ccxt":
        from cli_trading.exchanges.ccxt_adapter import create_ccxt, rps_shares

        # public candles need no keys; EXCHANGE_URL points them at the simulator too. Live, the
        # trade executor asks the same exchange: the feed keeps to its share of the ceiling
        rps = rps_shares(s.exchange_max_rps, live=s.trading_mode == "live")[1]
        exchange = create_ccxt(s.exchange_id, "", "", url=s.exchange_url, max_rps=rps)
        candles = CcxtFeed(exchange, s.symbol_list, timeframe=s.market_timeframe, poll_seconds=s.market_poll_s)
        return Feed(candles, exchange=exchange)
    if not s.replay_step:
        return Feed(ReplayFeed(s.symbol_list, speed=s.speed, folder=s.market_data_dir, loop=s.replay_loop))
    stepper = Stepper(redis)
    replay = ReplayFeed(s.symbol_list, speed=0, folder=s.market_data_dir, loop=s.replay_loop, after_step=stepper.settle)
    return Feed(replay, stepper=stepper)


@dataclass(frozen=True)
class AnalystParts:
    config: StrategyFile  # strategies.yaml
    # one instance per symbol and strategy: each follows its symbol bar by bar (incremental)
    models: dict[str, dict[str, Strategy[Any]]]
    last: dict[str, dict[str, Signal]]  # each model's latest signal, by symbol
    windows: dict[str, deque[Bar]]  # the latest bars by symbol (new parameters warm up on them)
    feed: Feed


def wire_analyst(svc: Services) -> AnalystParts:
    """The analyst's strategies for each symbol and its feed, from the settings."""
    s = svc.settings
    config, symbols = load_strategy_config(s.config_file("strategies.yaml")), s.symbol_list
    return AnalystParts(
        config,
        models={sym: config.for_symbol(sym) for sym in symbols},
        last={sym: {} for sym in symbols},
        windows={sym: deque(maxlen=WINDOW) for sym in symbols},
        feed=wire_feed(s, svc.redis),
    )


class MarketAnalyst(Agent[AnalystParts]):
    name = "market-analyst"
    uses_db = False
    bars_published = 0

    async def wire(self, services: Services) -> AnalystParts:
        return wire_analyst(services)

    async def on_stop(self) -> None:
        if self._parts is not None and self._parts.feed.exchange is not None:
            await self._parts.feed.exchange.close()

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(Stream.COMMANDS, Group.ANALYST, self.on_commands, key="requestId")]

    def loops(self) -> list[Any]:
        return [self._feed_loop]

    async def _feed_loop(self) -> None:
        if (stepper := self.parts.feed.stepper) is not None:  # step mode: every consumer is there before the first bar
            await stepper.settle(timeout_s=600)
        async for bar in self.parts.feed.source.stream():
            if self.stop_event.is_set():
                return
            self.observe(bar)
            await self.bus.publish(  # type: ignore[union-attr]  # the bus exists while loops run
                Stream.BARS,
                BarMsg(
                    symbol=bar.symbol,
                    barTs=bar.ts.isoformat(),
                    open=bar.open,
                    high=bar.high,
                    low=bar.low,
                    close=bar.close,
                    volume=bar.volume,
                ),
            )
            self.bars_published += 1

    def observe(self, bar: Bar) -> None:
        """Every strategy of the symbol sees the closed bar once (what the backtest does too)."""
        self.parts.windows[bar.symbol].append(bar)
        candle = Candle.of(bar)
        last = self.parts.last[bar.symbol]
        for name, model in self.parts.models[bar.symbol].items():
            last[name] = model.on_bar(candle)

    def analyze(self, symbol: str) -> tuple[Signal, Bar | None]:
        """The combined signal as of the symbol's latest bar, and that bar."""
        window = self.parts.windows.get(symbol)
        last = window[-1] if window else None
        return self.parts.config.combine_signals(list(self.parts.last.get(symbol, {}).values())), last

    def apply_params(self, name: str, params: dict[str, Any]) -> None:
        """New parameters: fresh instances, warmed up on the bars kept since start (at most WINDOW)."""
        entry = next(e for e in self.parts.config.strategies if e.name == name)
        for symbol, models in self.parts.models.items():
            if name not in models:
                continue
            model = build_strategy(name, params, cls=type(models[name]))
            for bar in self.parts.windows[symbol]:
                self.parts.last[symbol][name] = model.on_bar(Candle.of(bar))
            models[name] = model
        entry.params = params

    async def on_commands(self, batch: list[Delivery]) -> list[MessageResult]:
        out: list[MessageResult] = []
        for d in batch:
            try:
                cmd = COMMAND.validate_python(d.payload)
            except ValidationError as exc:
                out.append(PoisonMessage(f"invalid command: {exc.errors()[0]['msg']}"))
                continue
            if isinstance(cmd, AnalyzeCommand):
                # step mode: the risk manager has marked this bar too
                if (stepper := self.parts.feed.stepper) is not None:
                    await stepper.settle(BARS_READ)
                sig, last = self.analyze(cmd.symbol)
                await self.bus.publish(  # type: ignore[union-attr]  # the bus exists while consumers run
                    Stream.SIGNALS,
                    SignalMsg(
                        requestId=cmd.requestId,
                        symbol=cmd.symbol,
                        side=sig.side if last else None,
                        confidence=sig.confidence,
                        price=last.close if last else 0,
                        strategy=sig.strategy,
                        traceId=cmd.traceId,
                    ),
                )
            else:
                self.apply_params(cmd.strategy, cmd.params)
                self.audit("params:applied", target=cmd.strategy, params=cmd.params)
            out.append(None)
        return out

    async def status(self) -> dict[str, Any]:
        return {
            "feed": self.parts.feed.source.state(),
            "barsPublished": self.bars_published,
            "strategies": [e.name for e in self.parts.config.strategies],
            "symbols": self.settings.symbol_list,
        }
