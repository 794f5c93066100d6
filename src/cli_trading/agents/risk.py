"""risk-manager (7004): risk.requests → rules → risk.responses. Keeps its own ledger from
exec.status and market.bars, and reservations for approved orders not yet settled."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from cli_trading import metrics
from cli_trading.agents.base import Agent, Subscription
from cli_trading.bus import Delivery, Handled, Message, Outcome, PoisonMessage
from cli_trading.config import load_yaml
from cli_trading.contracts import Group, RiskRequest, RiskResponse, Stream
from cli_trading.db import repo
from cli_trading.haltgate import HaltGate
from cli_trading.trading import risk
from cli_trading.trading.ledger import FillRecord, Ledger, replay


def load_rules(path: Any) -> risk.RiskRules:
    return load_yaml(path, risk.RiskFile).risk  # type: ignore[attr-defined]


class RiskManager(Agent):
    name = "risk-manager"

    async def on_start(self) -> None:
        self.rules = load_rules(self.settings.config_file("risk.yaml"))
        self.gate = HaltGate(self.redis)
        self.book = risk.RiskBook()
        async with self.session() as s:
            self.ledger: Ledger = replay(self.settings.starting_cash, await repo.all_fills(s), await repo.load_marks(s))
        self.decisions = {"approved": 0, "rejected": 0}

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(Stream.RISK_REQUESTS, Group.RISK, self.handle_requests, key=lambda p: p.get("requestId")),
            Subscription(Stream.STATUS, Group.RISK, self.handle_status, key=lambda p: p.get("orderId")),
            Subscription(Stream.BARS, Group.RISK, self.handle_bars),
        ]

    async def handle_requests(self, batch: list[Delivery]) -> Handled:
        halt = await self.gate.read()
        out: list[Outcome] = []
        responses: list[Message] = []
        now = self.clock()
        for d in batch:
            try:
                msg = RiskRequest.model_validate(d.payload)
            except ValidationError as exc:
                out.append(PoisonMessage(f"invalid risk request: {exc.errors()[0]['msg']}"))
                continue
            req = risk.Request(msg.requestId, msg.symbol, msg.side, msg.qty, msg.price, msg.confidence, msg.manual)
            reason = risk.evaluate(req, rules=self.rules, halt=halt, ledger=self.ledger, book=self.book, now=now)
            if reason is None:
                self.book.reserve(req)
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

    async def handle_status(self, batch: list[Delivery]) -> list[Outcome]:
        for d in batch:
            p = d.payload
            if p.get("status") == "pending":
                continue
            self.book.release(p.get("requestId", ""))
            if p.get("status") == "filled":
                self.ledger.apply(FillRecord.from_status(p))
        return [None] * len(batch)

    async def handle_bars(self, batch: list[Delivery]) -> list[Outcome]:
        for d in batch:
            self.ledger.mark(d.payload["symbol"], Decimal(d.payload["close"]))
        return [None] * len(batch)

    async def status(self) -> dict[str, Any]:
        return {
            "rules": self.rules.model_dump(mode="json"),
            "decisions": self.decisions,
            "reservations": len(self.book.reserved),
        }
