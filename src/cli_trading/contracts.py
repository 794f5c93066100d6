"""Everything agents agree on: names, ports, streams, groups, message shapes, halt reasons.

Agents know each other only through this module (no agent imports another agent).
"""

from __future__ import annotations

import os
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cli_trading.isotime import iso as iso  # re-exported: the messages' time format
from cli_trading.isotime import now_utc as now_utc
from cli_trading.trading.ledger import FillRecord

AGENT_PORTS: dict[str, int] = {
    "orchestrator": 7001,
    "portfolio-manager": 7002,
    "market-analyst": 7003,
    "risk-manager": 7004,
    "trade-executor": 7005,
    "notification-manager": 7006,
    "parameter-optimizer": 7007,
}
AGENTS = tuple(AGENT_PORTS)


class Stream(StrEnum):
    COMMANDS = "orchestrator.commands"
    SIGNALS = "analysis.signals"
    RISK_REQUESTS = "risk.requests"
    RISK_RESPONSES = "risk.responses"
    ORDERS = "exec.orders"
    STATUS = "exec.status"
    NOTIFY = "notify.events"
    OPT_REQUESTS = "opt.requests"
    OPT_RESULTS = "opt.results"
    # Not in the original brief: marks for portfolio, PnL and the risk manager.
    BARS = "market.bars"


def dlq_of(stream: str) -> str:
    return f"{stream}.dlq"


class Group(StrEnum):
    ANALYST = "analyst"
    ORCHESTRATOR = "orchestrator"
    RISK = "risk"
    EXEC = "exec"
    PORTFOLIO = "portfolio"
    NOTIFY = "notify"
    OPTIMIZER = "optimizer"


# (stream, group) pairs that exist in a running system: the admin API answers 404 for others.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    Stream.COMMANDS: (Group.ANALYST,),
    Stream.SIGNALS: (Group.ORCHESTRATOR,),
    Stream.RISK_REQUESTS: (Group.RISK,),
    Stream.RISK_RESPONSES: (Group.ORCHESTRATOR,),
    Stream.ORDERS: (Group.EXEC,),
    Stream.STATUS: (Group.ORCHESTRATOR, Group.PORTFOLIO, Group.RISK),
    Stream.NOTIFY: (Group.NOTIFY,),
    Stream.OPT_REQUESTS: (Group.OPTIMIZER,),
    Stream.OPT_RESULTS: (Group.ORCHESTRATOR,),
    Stream.BARS: (Group.ORCHESTRATOR, Group.PORTFOLIO, Group.RISK),
}

# Redis keys shared between agents.
HALT_KEY = "cli-trading:halt"
INFLIGHT_KEY = "cli-trading:exec:inflight"


class HaltReason(StrEnum):
    DAILY_TARGET = "daily_target_reached"
    DAILY_LOSS = "daily_loss_limit"
    MANUAL = "manual"
    SYSTEM_ERROR = "system_error"
    SECURITY = "security_incident"
    EMERGENCY = "emergency_stop"
    RECONCILIATION_DRIFT = "reconciliation_drift"  # the exchange disagrees with the ledger (P1)


AUTO_CLEARING_REASONS = frozenset({HaltReason.DAILY_TARGET, HaltReason.DAILY_LOSS})


class HaltMode(StrEnum):
    HALT = "halt"
    REDUCE_ONLY = "reduce_only"
    FLATTEN = "flatten"


Side = Literal["buy", "sell"]
Severity = Literal["info", "warning", "critical"]


def new_id() -> str:
    """128 random bits as 32 hex digits, like `uuid4().hex` without building a UUID: every message
    gets one (its traceId), and the UUID object was most of its cost."""
    return os.urandom(16).hex()


def order_id_for(request_id: str) -> str:
    """orderId derived from requestId: a redelivered decision maps to the same order."""
    return f"ord-{request_id}"


class StreamMessage(BaseModel):
    """Base of every stream message: ts and traceId travel with it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    ts: str = Field(default_factory=iso)
    traceId: str = Field(default_factory=new_id)


class AnalyzeCommand(StreamMessage):
    type: Literal["analyze"] = "analyze"
    requestId: str
    symbol: str


class SignalMsg(StreamMessage):
    requestId: str
    symbol: str
    side: Side | None = None  # None: no signal (the run holds); left out of the message (exclude_none)
    confidence: float = Field(ge=0, le=1)
    price: Decimal
    strategy: str


class RiskRequest(StreamMessage):
    requestId: str
    symbol: str
    side: Side
    confidence: float = Field(ge=0, le=1)
    qty: Decimal = Field(gt=0)
    price: Decimal = Field(gt=0)
    manual: bool = False


class RiskResponse(StreamMessage):
    requestId: str
    ok: bool
    reason: str | None = None


class OrderMsg(StreamMessage):
    orderId: str
    requestId: str
    symbol: str
    side: Side
    qty: Decimal = Field(gt=0)
    type: Literal["market", "limit"] = "market"
    price: Decimal | None = None  # the reference price; a limit order's limit price
    timeInForce: Literal["GTC", "IOC", "FOK"] = "GTC"


class FillPart(BaseModel):
    """One fill of an order (a trade at the exchange; a paper order's one fill is `order`)."""

    fillId: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal("0")  # in the quote currency


class StatusMsg(StreamMessage):
    """An order's status. `filled` is final: qty, price and fee are the order's totals (filled
    quantity, average price, fees). `pending` with `fills` reports partial fills of an order still
    open (qty/price/fee: so far). `fills`, when present, are the fills this message carries, each
    applied once by (orderId, fillId) — a final message repeats those reported before; without
    it, a `filled` message is the order's one fill (messages from before fills were per trade)."""

    orderId: str
    requestId: str
    status: Literal["filled", "rejected", "failed", "pending"]
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal | None = None
    fee: Decimal = Decimal("0")
    reason: str | None = None
    fills: list[FillPart] | None = None
    statusId: str | None = None  # the consumers' idempotency key (`status_id`)

    def fill(self) -> FillRecord:
        """A "filled" status without `fills` as the ledger's fill: the order as one fill."""
        if self.price is None:
            raise ValueError(f"order {self.orderId}: a fill without a price")
        return FillRecord(self.orderId, self.symbol, self.side, self.qty, self.price, self.fee)

    def ledger_fills(self) -> list[FillRecord]:
        """The fills this message carries (what every agent's ledger applies, each once by
        order id and fill id): its `fills`, whatever the status (a `pending` message carries
        the partial fills of an order still open; the final `filled` one repeats them);
        without `fills`, a `filled` message is the order's one fill, any other none."""
        if self.fills is None:
            return [self.fill()] if self.status == "filled" else []
        o, sym, side = self.orderId, self.symbol, self.side
        return [FillRecord(o, sym, side, f.qty, f.price, f.fee, f.fillId) for f in self.fills]


ADOPTED_PREFIX = "adopted-"  # the request id of an order taken over from the exchange


def status_id(order_id: str, fills: list[FillPart] | None = None) -> str:
    """An exec.status message's idempotency key (`statusId`, what its consumers dedupe on): the
    order id for its final status; a `pending` message has one per set of fills (none: an order
    adopted from the exchange, announced), so that it never makes the order's final status look
    like a repeat."""
    return order_id if fills is None else f"{order_id}:pending:" + ",".join(f.fillId for f in fills)


class BarMsg(StreamMessage):
    symbol: str
    barTs: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class NotifyEvent(StreamMessage):
    type: str
    severity: Severity = "info"
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class ParamsCommand(StreamMessage):
    """An approved parameter set, for the market analyst."""

    type: Literal["params"] = "params"
    requestId: str
    strategy: str
    symbol: str
    params: dict[str, Any]


# What the market analyst reads on orchestrator.commands, told apart by `type`.
Command = Annotated[AnalyzeCommand | ParamsCommand, Field(discriminator="type")]


class OptRequest(StreamMessage):
    requestId: str
    strategy: str
    symbol: str
    reason: str = "loss"


class OptResult(StreamMessage):
    requestId: str
    strategy: str
    symbol: str
    proposals: list[dict[str, Any]]
    error: str | None = None  # the search was refused (unknown symbol, too little history)


def halt_severity(reason: str) -> Severity:
    """The runbook's severity of a halt notification."""
    if reason == HaltReason.DAILY_TARGET:
        return "info"
    if reason in CRITICAL_HALTS:
        return "critical"
    return "warning"  # manual, or a reason string of the operator's own


CRITICAL_HALTS = frozenset(
    {
        HaltReason.DAILY_LOSS,
        HaltReason.SYSTEM_ERROR,
        HaltReason.SECURITY,
        HaltReason.EMERGENCY,
        HaltReason.RECONCILIATION_DRIFT,
    }
)
