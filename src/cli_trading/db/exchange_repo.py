"""Repository functions for live trading's own tables: orders as the exchange has them, their
trades (each partial fill a row), and the balance baseline reconciliation starts from."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.db.models import ExchangeBaseline, ExchangeFill, ExchangeOrder, Fill
from cli_trading.db.repo import _insert
from cli_trading.exchanges.orders import FINAL, Tracked

ORDERS = ExchangeOrder.__table__
FILLS = ExchangeFill.__table__
BASELINE = ExchangeBaseline.__table__
_ORDER_COLS = ("symbol", "side", "type", "qty", "limit_price", "time_in_force")


async def save_tracked(session: AsyncSession, *, order: dict[str, Any], tracked: Tracked, now: datetime) -> None:
    """Upsert the order's exchange state and add its trades not recorded yet (by trade id)."""
    values = {
        **{c: order[c] for c in _ORDER_COLS},
        "order_id": tracked.order_id,
        "status": tracked.status,
        "exchange_order_id": tracked.exchange_id,
        "filled": max(tracked.filled, tracked.fill_qty),
        "reason": (tracked.rejection or "")[:200] or None,
        "created_at": now,
        "updated_at": now,
    }
    stmt = _insert(session, ORDERS).values(**values)
    update = {k: values[k] for k in ("status", "exchange_order_id", "filled", "reason", "updated_at")}
    await session.execute(stmt.on_conflict_do_update(index_elements=["order_id"], set_=update))
    rows = [
        {
            "order_id": tracked.order_id,
            "trade_id": f.trade_id,
            "ts": now,
            "symbol": order["symbol"],
            "side": order["side"],
            "qty": f.qty,
            "price": f.price,
            "fee_charged": f.fee_charged,
            "fee_currency": f.fee_currency,
            "fee_quote": f.fee_quote,
        }
        for f in tracked.fills
    ]
    if rows:
        ins = _insert(session, FILLS).values(rows)
        await session.execute(ins.on_conflict_do_nothing(index_elements=["order_id", "trade_id"]))


async def open_orders(session: AsyncSession) -> list[ExchangeOrder]:
    """Orders not final at the exchange as far as we know."""
    stmt = select(ExchangeOrder).where(ExchangeOrder.status.not_in(sorted(FINAL)))
    return list((await session.scalars(stmt)).all())


async def fills(session: AsyncSession) -> list[ExchangeFill]:
    return list((await session.scalars(select(ExchangeFill).order_by(ExchangeFill.id))).all())


async def baseline(session: AsyncSession) -> dict[str, Decimal]:
    return {b.asset: b.amount for b in (await session.scalars(select(ExchangeBaseline))).all()}


async def baseline_taken_at(session: AsyncSession) -> datetime | None:
    """When the baseline's balances were read (the first start, or the operator's last accept)."""
    return (await session.execute(select(func.max(ExchangeBaseline.set_at)))).scalar_one_or_none()


async def set_baseline(session: AsyncSession, *, amounts: dict[str, Decimal], now: datetime) -> None:
    """Record the balances live trading starts from, on its first start only. An asset missing from
    the baseline was not held then (exchanges that list no zero balances): what is held of it now
    comes from our trades, explained by them, or from elsewhere, which is drift; taking it in at a
    restart would count our trades twice."""
    if await baseline(session):
        return
    for asset, amount in amounts.items():
        stmt = _insert(session, BASELINE).values(asset=asset, amount=amount, set_at=now)
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["asset"]))


async def replace_baseline(session: AsyncSession, *, amounts: dict[str, Decimal], now: datetime) -> None:
    await session.execute(delete(BASELINE))
    for asset, amount in amounts.items():
        await session.execute(BASELINE.insert().values(asset=asset, amount=amount, set_at=now))


async def day_notional(session: AsyncSession, *, day: str) -> Decimal:
    """Notional traded on a UTC day (the live daily cap after a restart)."""
    rows = await session.execute(select(Fill.qty, Fill.price).where(Fill.day == day))
    return sum((q * p for q, p in rows.all()), Decimal(0))
