"""The database side of backup and restore: consistent dumps (pg_dump custom format on an exported
snapshot, SQLite's online backup API), restores, scratch databases for `verify`, and the ledger
summary that proves a restore: PnL recomputed from the restored fills must equal the PnL recorded
from the same snapshot at backup time."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from cli_trading.db import engine as dbengine
from cli_trading.db import repo, server_repo
from cli_trading.trading.ledger import replay

LEDGER_KEYS = ("fills", "cash", "realized", "fees", "equity", "positions")


class DbToolError(RuntimeError):
    pass


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """postgresql+asyncpg://u:p@h/db → (postgresql://u@h/db, {PGPASSWORD: p}): no password in argv."""
    u = make_url(url)
    env = {"PGPASSWORD": u.password} if u.password else {}
    plain = u.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return plain, env


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        raise DbToolError(f"{name} not found: install the PostgreSQL client tools (postgresql-client)")
    return found


async def run_tool(args: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise DbToolError(f"{Path(args[0]).name} failed ({proc.returncode}): {err.decode(errors='replace')[-800:]}")


# -- the ledger summary ---------------------------------------------------------------------
async def summarize(session: AsyncSession, starting_cash: Decimal) -> dict[str, Any]:
    fills = await repo.all_fills(session)
    ledger = replay(starting_cash, fills, await repo.load_marks(session))
    snap = ledger.snapshot()
    tables = await repo.row_counts(session)
    return {
        "startingCash": str(starting_cash),
        "fills": len(fills),
        "cash": str(snap.cash),
        "realized": str(snap.realized),
        "fees": str(snap.fees),
        "equity": str(snap.equity),
        "positions": {sym: str(p.qty) for sym, p in sorted(ledger.positions.items()) if p.qty},
        "tables": tables,
        "halt": (await repo.load_halt(session)).to_api(),
    }


def compare_ledger(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Differences between two summaries (empty when the ledger is intact)."""
    diffs = [
        f"{k}: backup {recorded.get(k)} ≠ restored {now.get(k)}"
        for k in LEDGER_KEYS
        if _norm(recorded.get(k)) != _norm(now.get(k))
    ]
    for table, n in (recorded.get("tables") or {}).items():
        if now.get("tables", {}).get(table) != n:
            diffs.append(f"table {table}: backup {n} rows ≠ restored {now.get('tables', {}).get(table)}")
    return diffs


def _norm(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    try:
        return Decimal(str(v)).normalize() if v is not None and not isinstance(v, int) else v
    except ArithmeticError:
        return v


def close(a: Any, b: Any, tol: Decimal = Decimal("0.000001")) -> bool:
    """Equal within `tol` (JSON APIs may carry money as floats)."""
    try:
        return abs(Decimal(str(a)) - Decimal(str(b))) <= tol
    except ArithmeticError:
        return False


async def summary_of(url: str, starting_cash: Decimal) -> dict[str, Any]:
    async with dbengine.one_session(url) as s:
        return await summarize(s, starting_cash)


# -- SQLite ---------------------------------------------------------------------------------
def sqlite_copy(src: Path, dest: Path) -> None:
    """SQLite's online backup API: a consistent copy while the agents keep writing."""
    if not src.exists():
        raise DbToolError(f"SQLite database {src} does not exist")
    s, d = sqlite3.connect(src, timeout=30), sqlite3.connect(dest, timeout=30)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


# -- PostgreSQL -----------------------------------------------------------------------------
async def pg_dump(url: str, dest: Path, starting_cash: Decimal) -> dict[str, Any]:
    """pg_dump -Fc on a snapshot exported by the transaction that also computes the summary: the
    dump and the recorded PnL describe the same instant."""
    plain, env = libpq(url)
    async with dbengine.short_lived(url) as engine, engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            session = AsyncSession(bind=conn)
            snapshot = await repo.pg_export_snapshot(session)
            summary = await summarize(session, starting_cash)
            args = [tool("pg_dump"), "-Fc", "--no-owner", "--no-privileges", f"--snapshot={snapshot}"]
            await run_tool([*args, "-f", str(dest), "-d", plain], env)
    return summary


async def pg_restore(dump: Path, url: str, *, terminate_others: bool) -> None:
    """Replace the database's objects with the dump's, in one transaction."""
    plain, env = libpq(url)
    if terminate_others:
        await pg_terminate_others(url)
    args = [tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
    await run_tool([*args, "-d", plain, str(dump)], env)


async def pg_terminate_others(url: str) -> int:
    async with dbengine.short_lived(url, connect_timeout_s=5) as engine, engine.connect() as conn:
        return await server_repo.terminate_other_sessions(await server_repo.autocommit(conn))


@asynccontextmanager
async def pg_scratch(url: str) -> AsyncIterator[str]:
    """A fresh database next to the live one, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"ct_verify_{uuid.uuid4().hex[:10]}"
    async with dbengine.short_lived(url, connect_timeout_s=5) as engine, engine.connect() as conn:
        admin = await server_repo.autocommit(conn)
        try:
            await server_repo.create_database(admin, name=name)
        except DBAPIError as exc:
            raise DbToolError(f"cannot create a scratch database for verification: {exc.orig}") from exc
        try:
            yield with_database(url, name)
        finally:
            await server_repo.drop_database(admin, name=name)
