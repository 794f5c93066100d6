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
from cli_trading.agents.risk_wiring import RiskParts, adopted_terms, wire_risk
from cli_trading.agents.wiring import Services
from cli_trading.bus import Delivery, Handled, MessageResult, Outgoing, PoisonMessage, decoded, failures, valid
from cli_trading.config import Settings
from cli_trading.contracts import (
    ADOPTED_PREFIX,
    BarMsg,
    Group,
    RiskRequest,
    RiskResponse,
    StatusMsg,
    Stream,
    iso,
)
from cli_trading.db import repo
from cli_trading.exchanges.keys import BALANCES_KEY, MARKETS_KEY
from cli_trading.exchanges.markets import MarketRules
from cli_trading.trading import risk
from cli_trading.trading.risk_recovery import priced


class RiskManager(Agent[RiskParts]):
    name = "risk-manager"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.decisions = {"approved": 0, "rejected": 0}

    async def wire(self, services: Services) -> RiskParts:
        return await wire_risk(services)

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
        parts = self.parts
        halt = await parts.gate.read()
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
                rules=parts.rules,
                halt=halt,
                ledger=parts.ledger,
                book=parts.book,
                now=now,
                venue=venue(msg.symbol) if venue else None,
            )
            if reason is None:
                parts.book.reserve(req)
                parts.book.add_day(day, req.qty * req.price)
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
                    # ts: the decision's time, the one the rate window holds (rebuilt from it at a restart)
                    RiskResponse(
                        requestId=msg.requestId, ok=reason is None, reason=reason, traceId=msg.traceId, ts=iso(now)
                    ),
                )
            )
            out.append(None)
        return Handled(out, emit=responses)

    async def handle_status(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(StatusMsg, batch)
        ledger, book = self.parts.ledger, self.parts.book
        await self._reserve_adopted(valid(msgs))
        for st in msgs:
            if isinstance(st, PoisonMessage):
                continue
            for f in st.ledger_fills():  # partial fills of an order still open too
                ledger.apply(f)
            if st.status != "pending":  # the order's end: its reservation goes
                book.release(st.requestId)
            elif st.fills:  # partly filled (qty: so far): that part is a position now, the rest stays reserved
                book.fill(st.requestId, st.qty)
        return failures(msgs)

    async def _reserve_adopted(self, statuses: list[StatusMsg]) -> None:
        """Orders adopted from the exchange since the start (announced `pending`, exchanges/desk.py)
        are reserved like those found at start, by their `orders` rows' terms, before their fills
        (if any) are applied; a settled one (an old message delivered again) is not."""
        book = self.parts.book
        rids = {
            st.requestId
            for st in statuses
            if st.status == "pending" and st.requestId.startswith(ADOPTED_PREFIX) and st.requestId not in book.reserved
        }
        if not rids:
            return
        async with self.session() as sess:
            rows = [o for o in await repo.orders_of_requests(sess, request_ids=sorted(rids)) if o.status == "pending"]
            terms = await adopted_terms(sess, rows)
        day = self.clock().date().isoformat()
        for rid, adopted in terms.items():
            r = priced(adopted, self.parts.ledger.marks)
            if r is None:  # a market order before the symbol's first mark: its next message tries again
                self.log.warning("adopted order not reserved: no price for it yet", requestId=rid)
                continue
            book.reserve(r._replace(day=day))
            self.log.info("reserved an order adopted from the exchange", requestId=rid, qty=str(r.qty))

    async def handle_bars(self, batch: list[Delivery]) -> list[MessageResult]:
        msgs = decoded(BarMsg, batch)
        for bar in valid(msgs):
            self.parts.ledger.mark(bar.symbol, bar.close)
        return failures(msgs)

    async def status(self) -> dict[str, Any]:
        return {
            "rules": self.parts.rules.model_dump(mode="json"),
            "decisions": self.decisions,
            "reservations": len(self.parts.book.reserved),
        }
