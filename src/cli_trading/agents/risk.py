"""risk-manager (7004): risk.requests → rules → risk.responses. Keeps its own ledger from
exec.status and market.bars, and reservations for approved orders not yet settled."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from cli_trading import metrics
from cli_trading.agents.base import Agent, Subscription
from cli_trading.bus import Delivery, Handled, MessageResult, Outgoing, PoisonMessage, decoded, failures, valid
from cli_trading.config import load_yaml
from cli_trading.contracts import BarMsg, Group, RiskRequest, RiskResponse, StatusMsg, Stream
from cli_trading.db import exchange_repo, repo
from cli_trading.exchanges.keys import BALANCES_KEY, MARKETS_KEY
from cli_trading.exchanges.markets import MarketRules
from cli_trading.halt.gate import HaltGate
from cli_trading.trading import risk
from cli_trading.trading.ledger import Ledger, replay


def load_rules(path: Any) -> risk.RiskRules:
    return load_yaml(path, risk.RiskFile).risk


class RiskManager(Agent):
    name = "risk-manager"

    async def on_start(self) -> None:
        self.rules = load_rules(self.settings.config_file("risk.yaml"))
        self.gate = HaltGate(self.redis)
        self.book = risk.RiskBook()
        async with self.session() as s:
            self.ledger: Ledger = replay(self.settings.starting_cash, await repo.all_fills(s), await repo.load_marks(s))
            today = self.clock().date().isoformat()
            self.book.add_day(today, await exchange_repo.day_notional(s, day=today))  # the daily cap survives restarts
        self.decisions = {"approved": 0, "rejected": 0}

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(Stream.RISK_REQUESTS, Group.RISK, self.handle_requests, key="requestId"),
            Subscription(Stream.STATUS, Group.RISK, self.handle_status, key="statusId"),
            Subscription(Stream.BARS, Group.RISK, self.handle_bars),
        ]

    async def _venue(self) -> Callable[[str], risk.Venue] | None:
        """Live mode: the exchange's market rules and balances the executor publishes in Redis."""
        if self.settings.trading_mode != "live":
            return None
        markets_raw, balances_raw = await self.redis.mget(MARKETS_KEY, BALANCES_KEY)
        markets = {k: MarketRules.from_json(v) for k, v in orjson.loads(markets_raw or b"{}").items()}
        balances = {k: Decimal(v) for k, v in orjson.loads(balances_raw or b"{}").items()}
        s = self.settings
        caps = risk.LiveCaps(s.live_max_order_notional, s.live_max_daily_notional, s.live_max_open_orders)

        def venue(symbol: str) -> risk.Venue:
            m = markets.get(symbol)
            held = balances.get(m.base, Decimal(0)) if m and balances_raw else None
            return risk.Venue(caps, m, held)

        return venue

    async def handle_requests(self, batch: list[Delivery]) -> Handled:
        halt = await self.gate.read()
        venue = await self._venue()
        day = self.clock().date().isoformat()
        out: list[MessageResult] = []
        responses: list[Outgoing] = []
        now = self.clock()
        for d in batch:
            try:
                msg = RiskRequest.model_validate(d.payload)
            except ValidationError as exc:
                out.append(PoisonMessage(f"invalid risk request: {exc.errors()[0]['msg']}"))
                continue
            req = risk.Request(msg.requestId, msg.symbol, msg.side, msg.qty, msg.price, msg.confidence, msg.manual, day)
            reason = risk.evaluate(
                req,
                rules=self.rules,
                halt=halt,
                ledger=self.ledger,
                book=self.book,
                now=now,
                venue=venue(msg.symbol) if venue else None,
            )
            if reason is None:
                self.book.reserve(req)
                self.book.add_day(day, req.qty * req.price)
                self.decisions["approved"] += 1
            else:
                metrics.RISK_REJECTIONS.labels(reason).inc()
                self.decisions["rejected"] += 1
            self.audit(
                "risk:" + ("approved" if reason is None else "rejected"),
                request_id=msg.requestId,
                result=reason,
                target=msg.symbol,
            )
            responses.append(
                (
                    Stream.RISK_RESPONSES,
                    RiskResponse(requestId=msg.requestId, ok=reason is None, reason=reason, traceId=msg.traceId),
                )
            )
            out.append(None)
        return Handled(out, emit=responses)

    async def handle_status(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(StatusMsg, batch)
        for st in msgs:
            if isinstance(st, PoisonMessage):
                continue
            for f in st.ledger_fills():  # partial fills of an order still open too
                self.ledger.apply(f)
            if st.status != "pending":  # the order's end: its reservation goes
                self.book.release(st.requestId)
            elif st.fills:  # partly filled (qty: so far): that part is a position now, the rest stays reserved
                self.book.fill(st.requestId, st.qty)
        return failures(msgs)

    async def handle_bars(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(BarMsg, batch)
        for bar in valid(msgs):
            self.ledger.mark(bar.symbol, bar.close)
        return failures(msgs)

    async def status(self) -> dict[str, Any]:
        return {
            "rules": self.rules.model_dump(mode="json"),
            "decisions": self.decisions,
            "reservations": len(self.book.reserved),
        }
