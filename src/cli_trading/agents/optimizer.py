"""parameter-optimizer (7007): on opt.requests (sent by the orchestrator after a loss, or by an
operator), searches strategy parameters on recent candles and publishes proposals on
opt.results for approval. The search itself is `trading/optimize.py`."""

from __future__ import annotations

import asyncio
from typing import Any

from cli_trading.agents.base import Agent, Subscription
from cli_trading.bus import Delivery, per_message
from cli_trading.contracts import Group, OptRequest, OptResult, Stream
from cli_trading.market.bars import load_bars
from cli_trading.trading.optimize import default_grid, grid_search

LOOKBACK = 500


class ParameterOptimizer(Agent):
    name = "parameter-optimizer"
    uses_db = False

    async def on_start(self) -> None:
        self.completed = 0

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Stream.OPT_REQUESTS,
                Group.OPTIMIZER,
                per_message(self.on_request),
                key=lambda p: p.get("requestId"),
                batch=5,
            )
        ]

    async def on_request(self, d: Delivery) -> None:
        req = OptRequest.model_validate(d.payload)
        bars = load_bars(req.symbol, self.settings.market_data_dir)[-LOOKBACK:]
        proposals = await asyncio.to_thread(
            grid_search, req.strategy, {}, default_grid(req.strategy), bars, fee_bps=float(self.settings.fee_bps)
        )
        await self.bus.publish(
            Stream.OPT_RESULTS,
            OptResult(  # type: ignore[union-attr]
                requestId=req.requestId,
                strategy=req.strategy,
                symbol=req.symbol,
                traceId=req.traceId,
                proposals=[{"params": p.params, "score": p.score, "result": vars(p.result)} for p in proposals[:5]],
            ),
        )
        self.completed += 1

    async def status(self) -> dict[str, Any]:
        return {"completed": self.completed}
