"""parameter-optimizer (7007): on opt.requests (sent by the orchestrator after a loss, or by an
operator), runs a walk-forward optimisation of the strategy's parameters on the symbol's candles
through the backtest engine, and publishes on opt.results the proposals that did better out of
sample than the parameters in force (docs/optimization.md). The work is
`research/walkforward.py`; it runs in a thread, spread over a pool of worker processes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.backtest import SimConfig
from cli_trading.bus import Delivery, PoisonMessage, decoded, per_message
from cli_trading.config import Settings, load_yaml
from cli_trading.contracts import Group, OptRequest, OptResult, Stream
from cli_trading.market.bars import load_bars
from cli_trading.research.runs import Study
from cli_trading.research.walkforward import SearchResult, Spec, optimize
from cli_trading.trading.optimize import summary
from cli_trading.trading.risk import RiskFile, RiskRules
from cli_trading.trading.strategy_config import StrategyFile, load_strategy_config

HISTORY = 5000  # the most recent bars searched: the shipped BTC-USD history, 200 days of hours


@dataclasses.dataclass(frozen=True)
class OptimizerParts:
    strategies: StrategyFile  # strategies.yaml: the parameters in force and their search spaces
    rules: RiskRules  # risk.yaml: the backtests size and limit orders as the risk manager does


def wire_optimizer(svc: Services) -> OptimizerParts:
    """The strategies and the risk rules, from the configuration folder."""
    s = svc.settings
    strategies = load_strategy_config(s.config_file("strategies.yaml"))
    return OptimizerParts(strategies, load_yaml(s.config_file("risk.yaml"), RiskFile).risk)


class ParameterOptimizer(Agent[OptimizerParts]):
    name = "parameter-optimizer"
    uses_db = False

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.completed = self.failed = 0
        self.last: dict[str, Any] | None = None

    async def wire(self, services: Services) -> OptimizerParts:
        return wire_optimizer(services)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Stream.OPT_REQUESTS,
                Group.OPTIMIZER,
                per_message(self.on_request),
                key="requestId",
                batch=1,  # one search at a time: it already takes every core
            )
        ]

    def study(self, symbol: str) -> Study:
        bars = load_bars(symbol, self.settings.market_data_dir)[-HISTORY:]
        cfg = SimConfig.from_settings(self.settings)
        return Study.of(symbol, bars, self.parts.strategies, self.parts.rules, **dataclasses.asdict(cfg))

    def search(self, req: OptRequest, current: dict[str, Any] | None) -> SearchResult:
        # stop: a shutdown ends the search within a backtest; the request stays unacknowledged
        # and is searched again after the restart
        return optimize(self.study(req.symbol), Spec(req.strategy), current=current, stop=self.stop_event.is_set)

    async def on_request(self, d: Delivery) -> None:
        (req,) = decoded(OptRequest, [d])
        if isinstance(req, PoisonMessage):
            raise req  # dead-lettered at once, not retried
        current = (req.model_extra or {}).get("current")
        started = time.monotonic()
        try:
            out = await asyncio.to_thread(self.search, req, current)
        except ValueError as exc:  # unknown symbol or strategy, too little history: say so, don't retry
            self.failed += 1
            await self.publish(req, proposals=[], error=str(exc))
            self.log.warning("optimize.refused", requestId=req.requestId, error=str(exc))
            return
        await self.publish(
            req,
            proposals=[p.as_dict() for p in out.proposals],
            current=out.current,
            walkForward={**summary(out.results), "windows": [r.as_dict() for r in out.results]},
            evaluated=out.evaluated,
            bars=out.bars,
        )
        self.completed += 1
        self.last = {
            "requestId": req.requestId,
            "strategy": req.strategy,
            "symbol": req.symbol,
            "proposals": len(out.proposals),
            "evaluated": out.evaluated,
            "seconds": round(time.monotonic() - started, 3),
        }
        self.log.info("optimize.done", **self.last)

    async def publish(self, req: OptRequest, **fields: Any) -> None:
        if self.bus is None:  # set up by start(), before any message is consumed
            raise RuntimeError("the optimizer publishes only once started")
        await self.bus.publish(
            Stream.OPT_RESULTS,
            OptResult(
                requestId=req.requestId, strategy=req.strategy, symbol=req.symbol, traceId=req.traceId, **fields
            ),
        )

    async def status(self) -> dict[str, Any]:
        return {"completed": self.completed, "failed": self.failed, "last": self.last}
