"""portfolio-manager (7002): positions, cash and equity from exec.status fills and market.bars
marks; persists the latest marks so PnL can be recomputed from the database alone."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI

from cli_trading.agents.base import Agent, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.bus import Delivery, MessageResult, PoisonMessage, decoded, failures, valid
from cli_trading.config import Settings
from cli_trading.contracts import BarMsg, Group, StatusMsg, Stream
from cli_trading.db import repo
from cli_trading.trading.ledger import Ledger, replay


@dataclass(frozen=True)
class PortfolioParts:
    ledger: Ledger  # positions, cash and equity from the fills, marked at the bars' closes


async def wire_portfolio(svc: Services) -> PortfolioParts:
    """The portfolio's ledger, replayed from the database's fills and saved marks."""
    async with svc.sessions() as sess:
        fills, marks = await repo.all_fills(sess), await repo.load_marks(sess)
    return PortfolioParts(replay(svc.settings.starting_cash, fills, marks))


class PortfolioManager(Agent[PortfolioParts]):
    name = "portfolio-manager"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._dirty_marks: dict[str, tuple[Decimal, datetime]] = {}  # saved by `_save_marks`

    async def wire(self, services: Services) -> PortfolioParts:
        return await wire_portfolio(services)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(Stream.STATUS, Group.PORTFOLIO, self.handle_status, key="statusId"),
            Subscription(Stream.BARS, Group.PORTFOLIO, self.handle_bars),
        ]

    def loops(self) -> list[Any]:
        return [self._save_marks]

    async def handle_status(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(StatusMsg, batch)
        for st in msgs:
            if not isinstance(st, PoisonMessage):
                for f in st.ledger_fills():  # a partial fill moves positions at once
                    self.parts.ledger.apply(f)
        return failures(msgs)

    async def handle_bars(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(BarMsg, batch)
        for bar in valid(msgs):
            self.parts.ledger.mark(bar.symbol, bar.close)
            self._dirty_marks[bar.symbol] = (bar.close, self.clock())
        return failures(msgs)

    async def _save_marks(self) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), 1.0)
            if not self._dirty_marks:
                continue
            marks, self._dirty_marks = self._dirty_marks, {}
            try:
                async with self.session() as s, s.begin():
                    await repo.save_marks(s, marks=marks)
            except Exception as exc:  # noqa: BLE001
                self._dirty_marks = {**marks, **self._dirty_marks}
                self.log.warning("saving marks failed", error=str(exc)[:200])

    def holdings(self) -> dict[str, Any]:
        snap = self.parts.ledger.snapshot()
        return {
            "cash": snap.cash,
            "equity": snap.equity,
            "exposure": snap.exposure,
            "realized": snap.realized,
            "unrealized": snap.unrealized,
            "fees": snap.fees,
            "positions": self.parts.ledger.holdings(),
        }

    async def status(self) -> dict[str, Any]:
        snap = self.parts.ledger.snapshot()
        return {"equity": str(snap.equity), "cash": str(snap.cash), "positions": len(self.parts.ledger.holdings())}

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/portfolio/holdings", tags=["portfolio"])
        async def holdings() -> dict[str, Any]:
            return self.holdings()
