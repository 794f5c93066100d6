"""Repository functions: every query the agents run, with keyword-only arguments. No query is
written inline anywhere else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, desc, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.db import pgraw
from cli_trading.db.engine import json_text
from cli_trading.db.models import AuditEvent, Base, Fill, HaltEvent, HaltStateRow, Mark, Order, Param, PnlDay
from cli_trading.db.pgraw import dialect as _dialect
from cli_trading.halt.state import HaltState
from cli_trading.trading.ledger import FillRecord

T = TypeVar("T", bound=Base)


def _insert(session: AsyncSession | str, table: Table) -> Any:
    """INSERT with ON CONFLICT, for the session's dialect (or a dialect name)."""
    dialect = session if isinstance(session, str) else _dialect(session)
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# Statements run on every batch are built once: building one (and its cache key) costs more CPU
# than executing it on a small batch.
_built: dict[tuple[Any, ...], Any] = {}


def _insert_new_stmt(
    session: AsyncSession, table: Table, key: str, cols: tuple[str, ...], unique: tuple[str, ...]
) -> Any:
    dialect = _dialect(session)
    k = ("insert_new", dialect, table.name, key, unique, cols if dialect == "postgresql" else ())
    if k not in _built:
        if dialect == "postgresql":
            # INSERT … SELECT unnest(one array per column): the same statement for any number of
            # rows, so the server and asyncpg prepare it once (a multi-row VALUES, which
            # executemany with RETURNING becomes, is a new statement for every batch size)
            arrays = [func.unnest(bindparam(f"u_{c}", type_=postgresql.ARRAY(table.c[c].type))) for c in cols]
            stmt = _insert(dialect, table).from_select(list(cols), select(*arrays))
        else:
            stmt = _insert(dialect, table)
        _built[k] = stmt.on_conflict_do_nothing(index_elements=list(unique)).returning(table.c[key])
    return _built[k]


async def insert_new(
    session: AsyncSession,
    *,
    table: Table,
    rows: Sequence[dict[str, Any]],
    key: str,
    unique: tuple[str, ...] | None = None,
) -> set[str]:
    """Insert rows whose unique columns (`unique`, by default `key` alone) are not there yet;
    return the `key` of the rows actually inserted. The rows share one set of columns."""
    if not rows:
        return set()
    cols = tuple(rows[0])
    stmt = _insert_new_stmt(session, table, key, cols, unique or (key,))
    if _dialect(session) == "postgresql":
        res = await session.execute(stmt, {f"u_{c}": [r[c] for r in rows] for c in cols})
    else:
        res = await session.execute(stmt, list(rows))
    return {r[0] for r in res.all()}


async def update_many(session: AsyncSession, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """One executemany per set of columns: rows carry the key plus the columns to set."""
    by_cols: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_cols.setdefault(tuple(sorted(row)), []).append({f"b_{k}": v for k, v in row.items()})
    for cols, params in by_cols.items():
        k = ("update_many", table.name, key, cols)
        if k not in _built:
            values: dict[str, Any] = {c: bindparam(f"b_{c}") for c in cols if c != key}
            stmt = update(table).where(table.c[key] == bindparam(f"b_{key}")).values(**values)
            _built[k] = stmt.execution_options(synchronize_session=False)
        await session.execute(_built[k], params)


# -- audit ----------------------------------------------------------------------------------
# Every agent writes its audit rows several times a second under load: on PostgreSQL one
# statement straight to asyncpg (db/pgraw.py); SQLite keeps the SQLAlchemy statement.
_AUDIT_INSERT = AuditEvent.__table__.insert()
_AUDIT_COLUMNS = (
    ("ts", "timestamptz"),
    ("agent", "varchar"),
    ("action", "varchar"),
    ("actor", "varchar"),
    ("source", "varchar"),
    ("target", "varchar"),
    ("result", "varchar"),
    ("request_id", "varchar"),
    ("detail", "text"),  # JSON text (json_text; None is JSON null, as SQLAlchemy writes it)
)
# made of the column constants above, no value in it (S608)
_AUDIT_INSERT_PG = (
    f"INSERT INTO audit_events ({pgraw.names(_AUDIT_COLUMNS)}) SELECT {pgraw.names(_AUDIT_COLUMNS[:-1])}, detail::json "  # noqa: S608
    f"FROM {pgraw.unnest(_AUDIT_COLUMNS, 1)} AS u({pgraw.names(_AUDIT_COLUMNS)})"
)


async def add_audit(session: AsyncSession | pgraw.Held, *, rows: Sequence[dict[str, Any]]) -> None:
    """On PostgreSQL one statement (on a `pgraw.Held` connection it commits by itself)."""
    if not rows:
        return
    if isinstance(session, AsyncSession) and _dialect(session) != "postgresql":
        await session.execute(_AUDIT_INSERT, list(rows))
        return
    arrays: list[list[Any]] = [[r[c] for r in rows] for c, _ in _AUDIT_COLUMNS[:-1]]
    arrays.append([json_text(r["detail"]) for r in rows])
    await pgraw.execute(session, _AUDIT_INSERT_PG, arrays)


async def audit_tail(
    session: AsyncSession, *, limit: int = 50, since: datetime | None = None, action_prefix: str | None = None
) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(desc(AuditEvent.id)).limit(limit)
    if since:
        q = q.where(AuditEvent.ts >= since)
    if action_prefix:
        q = q.where(AuditEvent.action.startswith(action_prefix))
    return list((await session.scalars(q)).all())


# -- orders and fills -----------------------------------------------------------------------
async def claim_orders(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert orders as pending; the ids returned are new (the rest were seen before)."""
    return await insert_new(session, table=Order.__table__, rows=rows, key="order_id")


async def get_orders(session: AsyncSession, *, order_ids: Sequence[str]) -> list[Order]:
    if not order_ids:
        return []
    return list((await session.scalars(select(Order).where(Order.order_id.in_(order_ids)))).all())


async def select_in(session: AsyncSession, model: type[T], column: Any, values: Sequence[str]) -> list[T]:
    """The rows of `model` whose `column` is one of `values` (in chunks: SQLite bounds a
    statement's parameters)."""
    ids = list(dict.fromkeys(values))
    out: list[T] = []
    for i in range(0, len(ids), 1000):
        out.extend((await session.scalars(select(model).where(column.in_(ids[i : i + 1000])))).all())
    return out


async def orders_of_requests(session: AsyncSession, *, request_ids: Sequence[str]) -> list[Order]:
    return await select_in(session, Order, Order.request_id, request_ids)


async def settle_orders(
    session: AsyncSession, *, orders: Sequence[dict[str, Any]], fills: Sequence[dict[str, Any]]
) -> None:
    await update_many(session, Order.__table__, "order_id", orders)
    await insert_fills(session, fills=fills)


async def insert_fills(session: AsyncSession, *, fills: Sequence[dict[str, Any]]) -> None:
    """Fill rows, each once: a fill recorded again (a redelivery, a restart, the final status of
    an order whose partial fills are in already) is left as it is."""
    await insert_new(session, table=Fill.__table__, rows=fills, key="order_id", unique=("order_id", "trade_id"))


async def stale_pending_orders(session: AsyncSession) -> list[Order]:
    return list((await session.scalars(select(Order).where(Order.status == "pending"))).all())


async def orders_since(session: AsyncSession, *, since: datetime) -> list[tuple[str, datetime]]:
    """(request id, created_at) of the orders claimed at or after `since`, whatever their status."""
    rows = await session.execute(select(Order.request_id, Order.created_at).where(Order.created_at >= since))
    return [(rid, at) for rid, at in rows.all()]


async def all_fills(session: AsyncSession) -> list[FillRecord]:
    rows = await session.execute(
        select(Fill.order_id, Fill.symbol, Fill.side, Fill.qty, Fill.price, Fill.fee, Fill.trade_id).order_by(Fill.id)
    )
    return [FillRecord(*r) for r in rows.all()]


async def recent_fills(session: AsyncSession, *, limit: int = 50) -> list[Fill]:
    return list((await session.scalars(select(Fill).order_by(desc(Fill.id)).limit(limit))).all())


# -- marks and the trading day --------------------------------------------------------------
async def save_marks(session: AsyncSession, *, marks: dict[str, tuple[Decimal, datetime]]) -> None:
    for sym, (price, ts) in marks.items():
        stmt = _insert(session, Mark.__table__).values(symbol=sym, price=price, ts=ts)
        stmt = stmt.on_conflict_do_update(index_elements=["symbol"], set_={"price": price, "ts": ts})
        await session.execute(stmt)


async def load_marks(session: AsyncSession) -> dict[str, Decimal]:
    return {m.symbol: m.price for m in (await session.scalars(select(Mark))).all()}


async def get_day(session: AsyncSession, *, day: str) -> PnlDay | None:
    return await session.get(PnlDay, day)


async def save_day(session: AsyncSession, *, row: dict[str, Any]) -> None:
    stmt = _insert(session, PnlDay.__table__).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=["day"], set_={k: v for k, v in row.items() if k != "day"})
    await session.execute(stmt)


# -- halt -----------------------------------------------------------------------------------
async def load_halt(session: AsyncSession) -> HaltState:
    row = await session.get(HaltStateRow, 1)
    if row is None:
        return HaltState()
    return HaltState(row.halted, row.reason, row.mode, row.halted_at, row.halted_by, row.note)


async def halt_saved_at(session: AsyncSession) -> datetime | None:
    """When the halt state was last written (None: never)."""
    return await session.scalar(select(HaltStateRow.updated_at).where(HaltStateRow.id == 1))


def halt_statements(dialect: str, *, state: HaltState, event: dict[str, Any], now: datetime) -> list[Any]:
    """The state and its transition, atomically; the last statement returns the event's id. On
    PostgreSQL one statement (the upsert as a CTE of the event's insert), so an autocommit
    connection writes it in one round trip; on SQLite two, for the caller's transaction."""
    values = {
        "halted": state.halted,
        "reason": state.reason,
        "mode": state.mode,
        "halted_at": state.halted_at,
        "halted_by": state.halted_by,
        "note": state.note,
        "updated_at": now,
    }
    upsert = _insert(dialect, HaltStateRow.__table__).values(id=1, **values)
    upsert = upsert.on_conflict_do_update(index_elements=["id"], set_=values)
    record = HaltEvent.__table__.insert().values(ts=now, **event).returning(HaltEvent.id)
    if dialect == "postgresql":
        return [record.add_cte(upsert.cte("halt_state_upsert"))]
    return [upsert, record]


async def save_halt(session: AsyncSession, *, state: HaltState, event: dict[str, Any], now: datetime) -> int:
    """Write the state and its transition (the caller commits); returns the event's id."""
    for stmt in halt_statements(_dialect(session), state=state, event=event, now=now):
        result = await session.execute(stmt)
    return result.scalar_one()


async def halt_events(session: AsyncSession, *, limit: int = 100) -> list[HaltEvent]:
    return list((await session.scalars(select(HaltEvent).order_by(desc(HaltEvent.id)).limit(limit))).all())


# -- strategy parameters ----------------------------------------------------------------------
async def add_params(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    session.add_all([Param(**r) for r in rows])


async def list_params(session: AsyncSession, *, status: str | None = None, limit: int = 50) -> list[Param]:
    q = select(Param).order_by(desc(Param.id)).limit(limit)
    if status:
        q = q.where(Param.status == status)
    return list((await session.scalars(q)).all())


async def get_param(session: AsyncSession, *, param_id: int) -> Param | None:
    return await session.get(Param, param_id)


async def decide_param(session: AsyncSession, *, row: Param, status: str, actor: str, at: datetime) -> None:
    """Record an operator's decision on a parameter set (the caller commits)."""
    row.status, row.decided_by, row.decided_at = status, actor, at
    await session.flush()


# -- database administration (backup, restore, the security audit) ----------------------------
async def row_counts(session: AsyncSession) -> dict[str, int]:
    """Rows per table of the schema (a restore is proved by the same counts)."""
    counts = {}
    for t in Base.metadata.sorted_tables:
        counts[t.name] = int((await session.execute(select(func.count()).select_from(t))).scalar_one())
    return counts


async def pg_export_snapshot(session: AsyncSession) -> str:
    """PostgreSQL: export the transaction's snapshot (pg_dump --snapshot reads the same instant)."""
    return str((await session.execute(text("SELECT pg_export_snapshot()"))).scalar_one())


async def pg_trust_rules(session: AsyncSession) -> list[tuple[str, str]]:
    """PostgreSQL: (type, address) of pg_hba.conf rules that let a client in without a password
    over the network (reading them needs a superuser)."""
    rows = await session.execute(
        text("SELECT type, address FROM pg_hba_file_rules WHERE auth_method = 'trust' AND type <> 'local'")
    )
    return [(str(r.type), str(r.address)) for r in rows]
