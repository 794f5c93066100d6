"""The durable schema: one for PostgreSQL and SQLite. Money is Numeric on PostgreSQL and text on
SQLite (whose NUMERIC affinity would silently turn it into a binary float)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, Numeric, String, Table, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Money(TypeDecorator[Decimal]):
    impl = Numeric(30, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(30, 12))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        d = Decimal(value)
        return format(d, "f") if dialect.name == "sqlite" else d

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        from datetime import UTC

        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    # every model is mapped to one Table (SQLAlchemy types it as the wider FromClause)
    __table__: ClassVar[Table]


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    agent: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(80), index=True)
    actor: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(80), index=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RunRow(Base):
    """One decision: analysis (or a manual order) → risk → order → outcome. `Row`: the table, read
    into control.runs.Run (from_row)."""

    __tablename__ = "runs"
    request_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    symbol: Mapped[str] = mapped_column(String(20))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    side: Mapped[str | None] = mapped_column(String(4))
    qty: Mapped[Decimal | None] = mapped_column(Money)
    price: Mapped[Decimal | None] = mapped_column(Money)
    strategy: Mapped[str | None] = mapped_column(String(40))
    confidence: Mapped[float | None] = mapped_column(Numeric(6, 4, asdecimal=False))
    outcome: Mapped[str | None] = mapped_column(String(12), index=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    order_id: Mapped[str | None] = mapped_column(String(90))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Order(Base):
    __tablename__ = "orders"
    order_id: Mapped[str] = mapped_column(String(90), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(80), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(Money)
    type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), index=True)
    price: Mapped[Decimal | None] = mapped_column(Money)
    fee: Mapped[Decimal | None] = mapped_column(Money)
    reason: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Fill(Base):
    """The PnL ledger: one row per fill. A live order has a row per trade the exchange made
    (`trade_id` is the exchange's trade id), written as the trade is seen, so a partial fill moves
    positions and PnL at once; a paper order has one row (`trade_id` "order", `ledger.WHOLE`)."""

    __tablename__ = "fills"
    __table_args__ = (Index("ux_fills_trade", "order_id", "trade_id", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(90))
    trade_id: Mapped[str] = mapped_column(String(64), server_default="order")
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    fee: Mapped[Decimal] = mapped_column(Money)


class Mark(Base):
    """Latest mark price per symbol, so PnL can be recomputed from the database alone."""

    __tablename__ = "marks"
    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    price: Mapped[Decimal] = mapped_column(Money)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)


class PnlDay(Base):
    __tablename__ = "pnl_days"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    start_equity: Mapped[Decimal] = mapped_column(Money)
    target_pct: Mapped[Decimal] = mapped_column(Money)
    loss_limit_pct: Mapped[Decimal] = mapped_column(Money)
    last_equity: Mapped[Decimal | None] = mapped_column(Money)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HaltStateRow(Base):
    """The durable copy of the halt flag (single row, id=1); Redis holds the live mirror. `Row`: the
    table, read into and written from halt.state.HaltState by db/repo.py."""

    __tablename__ = "halt_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    halted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(80))
    mode: Mapped[str] = mapped_column(String(20))
    halted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    halted_by: Mapped[str | None] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HaltEvent(Base):
    __tablename__ = "halt_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(80))
    mode: Mapped[str | None] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    severity: Mapped[str] = mapped_column(String(2))
    category: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(200))
    cause: Mapped[str | None] = mapped_column(String(120), index=True)
    commander: Mapped[str | None] = mapped_column(String(120))
    impact: Mapped[str | None] = mapped_column(Text)
    services: Mapped[list[str] | None] = mapped_column(JSON)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mitigated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    last_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)


class IncidentEvent(Base):
    """An incident's timeline."""

    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(120))


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    trace_id: Mapped[str | None] = mapped_column(String(80), index=True)
    type: Mapped[str] = mapped_column(String(80))
    severity: Mapped[str] = mapped_column(String(2))
    category: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(Integer)


class Param(Base):
    """Strategy parameter sets: proposed by the optimizer, approved by an operator."""

    __tablename__ = "params"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    request_id: Mapped[str] = mapped_column(String(80))
    strategy: Mapped[str] = mapped_column(String(40))
    symbol: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Numeric(20, 6, asdecimal=False))
    # {"inSample", "outOfSample", "currentOutOfSample"}: the walk-forward's figures (migration 0003)
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(12), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


Index("ix_params_request_rank", Param.request_id, Param.id)


# -- live trading: what the exchange has (db/exchange_repo.py) ------------------------------
class ExchangeOrder(Base):
    """An order as the exchange has it, tracked until its final status (live mode)."""

    __tablename__ = "exchange_orders"
    order_id: Mapped[str] = mapped_column(String(90), primary_key=True)  # ours = the client order id
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(10))
    qty: Mapped[Decimal] = mapped_column(Money)
    limit_price: Mapped[Decimal | None] = mapped_column(Money)
    time_in_force: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(20), index=True)  # new … filled/cancelled/rejected/expired
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    filled: Mapped[Decimal] = mapped_column(Money)
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExchangeFill(Base):
    """One trade of an order at the exchange (a partial fill is a row of its own), with the fee as
    charged and in the quote currency. `fills` has the same trades for the PnL ledger (fee in the
    quote currency only)."""

    __tablename__ = "exchange_fills"
    __table_args__ = (Index("ux_exchange_fills_trade", "order_id", "trade_id", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(90), index=True)
    trade_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    fee_charged: Mapped[Decimal] = mapped_column(Money)
    fee_currency: Mapped[str | None] = mapped_column(String(16))
    fee_quote: Mapped[Decimal] = mapped_column(Money)


class ExchangeBaseline(Base):
    """The exchange's balances when live trading started: what the ledger's fills are added to
    when reconciliation compares balances with the ledger."""

    __tablename__ = "exchange_baseline"
    asset: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)
