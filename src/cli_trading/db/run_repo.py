"""The `runs` table: every statement on it, with keyword-only arguments.

`write_runs` is the run book's group commit (control/runs.py, `RunBook.durable`): new runs,
changes to runs, and refusals, in one transaction. On PostgreSQL it is one statement sent
straight to asyncpg (db/pgraw.py): it commits by itself in one round trip, with no per-row work
in SQLAlchemy — the orchestrator's largest cost per run before. SQLite runs the same writes as
SQLAlchemy statements in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.db import pgraw
from cli_trading.db.models import RunRow
from cli_trading.db.repo import insert_new, select_in, update_many


async def add_runs(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> set[str]:
    return await insert_new(session, table=RunRow.__table__, rows=rows, key="request_id")


async def update_runs(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    """rows: dicts with request_id plus the columns to set."""
    await update_many(session, RunRow.__table__, "request_id", rows)


async def fail_open_runs(
    session: AsyncSession, *, request_ids: Sequence[str], reason: str, finished_at: datetime | None
) -> None:
    """Runs answered 503 whose acceptance commit may have landed anyway: failed, where they are
    there and still open (a run that does not exist stays absent)."""
    for i in range(0, len(request_ids), 1000):  # within SQLite's limit of bound values
        stmt = (
            update(RunRow)
            .where(RunRow.request_id.in_(request_ids[i : i + 1000]), RunRow.outcome.is_(None))
            .values(outcome="failed", reason=reason, finished_at=finished_at)
        )
        await session.execute(stmt.execution_options(synchronize_session=False))


async def take_over_runs(
    session: AsyncSession, *, rows: Sequence[dict[str, Any]], refused_reason: str
) -> set[str]:
    """New runs whose row exists already: a retry of a refused run (row open, or failed with
    `refused_reason`) takes the row over; any other existing row is left as it is. Returns the
    request ids taken over."""
    taken: set[str] = set()
    for row in rows:
        stmt = (
            update(RunRow)
            .where(
                RunRow.request_id == row["request_id"],
                or_(RunRow.outcome.is_(None), RunRow.reason == refused_reason),
            )
            .values(**{k: v for k, v in row.items() if k != "request_id"})
        )
        result = await session.execute(stmt.execution_options(synchronize_session=False))
        if result.rowcount:  # type: ignore[attr-defined]  # a CursorResult for an UPDATE
            taken.add(row["request_id"])
    return taken


async def get_run(session: AsyncSession, *, request_id: str) -> RunRow | None:
    return await session.get(RunRow, request_id)


async def get_runs(session: AsyncSession, *, request_ids: Sequence[str]) -> list[RunRow]:
    return await select_in(session, RunRow, RunRow.request_id, request_ids)


async def open_runs(session: AsyncSession) -> list[RunRow]:
    return list((await session.scalars(select(RunRow).where(RunRow.outcome.is_(None)))).all())


async def write_runs(
    session: AsyncSession | pgraw.Held,
    *,
    new: Sequence[dict[str, Any]],
    changed: Sequence[dict[str, Any]],
    refused: Sequence[str],
    refused_reason: str,
    refused_at: datetime | None,
) -> set[str]:
    """The run book's writes, all rows with every column: `new` rows inserted, or taking over
    the row of a refused run of the same id (open, or failed with `refused_reason`); `changed`
    rows written over theirs; the `refused` ids failed with `refused_reason` where their row is
    there and open. The three are disjoint (the run book keeps them so). Returns the ids of
    `new` whose row is theirs now; any other new id belongs to a finished run, left alone.
    On PostgreSQL `session` may be the run book's held connection (`pgraw.Held`)."""
    if pgraw.dialect(session) == "postgresql":
        rows = [*new, *changed]
        args: list[Any] = [[r[c] for r in rows] for c, _ in COLUMNS]
        args += [[r["request_id"] for r in changed], refused_reason]
        if refused:  # rare (the database was out): their statement only then
            args += [list(refused), refused_at]
        written = await pgraw.fetch_column(session, _UPSERT_REFUSING if refused else _UPSERT, args)
        return set(written).intersection(r["request_id"] for r in new)
    assert isinstance(session, AsyncSession)  # noqa: S101 - a Held is PostgreSQL's only
    ours = await add_runs(session, rows=new)
    if len(ours) < len(new):  # a retry of a refused run whose row landed: the row is the retry's
        existing = [r for r in new if r["request_id"] not in ours]
        ours |= await take_over_runs(session, rows=existing, refused_reason=refused_reason)
    await update_runs(session, rows=changed)
    if refused:
        await fail_open_runs(session, request_ids=refused, reason=refused_reason, finished_at=refused_at)
    return ours


# -- the PostgreSQL statement ---------------------------------------------------------------------
COLUMNS = (
    ("request_id", "varchar"),
    ("created_at", "timestamptz"),
    ("symbol", "varchar"),
    ("manual", "bool"),
    ("side", "varchar"),
    ("qty", "numeric"),
    ("price", "numeric"),
    ("strategy", "varchar"),
    ("confidence", "float8"),  # numeric(6, 4) in the table: a float, as SQLAlchemy binds it
    ("outcome", "varchar"),
    ("reason", "varchar"),
    ("order_id", "varchar"),
    ("finished_at", "timestamptz"),
)
_N = len(COLUMNS)  # the parameters after the arrays: changed ids, the refusals' reason, ids, time
_CHANGED, _REASON = f"${_N + 1}::varchar[]", f"${_N + 2}::varchar"
_REFUSED, _AT = f"${_N + 3}::varchar[]", f"${_N + 4}::timestamptz"
# One statement, atomic: every row, new or changed, goes through the insert, whose ON CONFLICT
# finds an existing row by the primary key (an UPDATE joined to the unnest was planned as a scan
# of the whole table). An existing row is written over where it is open or refused (a new run
# taking a refused one over) or where the row is a change; otherwise (a finished run's id) it is
# left alone and not returned. Made of the column constants above, no value in it (S608).
_UPSERT = (
    f"INSERT INTO runs AS r ({pgraw.names(COLUMNS)}) SELECT * FROM {pgraw.unnest(COLUMNS, 1)} "  # noqa: S608
    "ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c, _ in COLUMNS[1:])
    + f" WHERE r.outcome IS NULL OR r.reason = {_REASON} OR r.request_id = ANY({_CHANGED}) "
    "RETURNING r.request_id"
)
# The same with the refusals, a data-modifying CTE on other rows (found by primary key).
_UPSERT_REFUSING = (
    f"WITH ref AS (UPDATE runs AS r SET outcome = 'failed', reason = {_REASON}, finished_at = {_AT} "  # noqa: S608
    f"WHERE r.request_id = ANY({_REFUSED}) AND r.outcome IS NULL) {_UPSERT}"
)
