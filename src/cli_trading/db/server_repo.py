"""Statements about the database server rather than the trading data, for the command line's
tools: other sessions (restore), scratch databases (`backup verify`), the server's load (`ops
health`), a SQLite file's integrity (`sqlite_quick_check`). Each PostgreSQL statement takes a
connection from the engine factory (`db/engine.py`, `short_lived`). Creating or dropping a
database cannot run inside a transaction: those need a connection in AUTOCOMMIT (`autocommit`)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # the names we make (ct_verify_…): nothing to quote


async def autocommit(conn: AsyncConnection) -> AsyncConnection:
    """The same connection, each statement committed on its own (no transaction around it)."""
    return await conn.execution_options(isolation_level="AUTOCOMMIT")


async def terminate_other_sessions(conn: AsyncConnection) -> int:
    """End every other session on this connection's database; how many there were."""
    rows = await conn.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    return len(rows.all())


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


async def create_database(conn: AsyncConnection, *, name: str) -> None:
    """CREATE DATABASE (`conn` in AUTOCOMMIT)."""
    await conn.execute(text(f'CREATE DATABASE "{_checked(name)}"'))


async def drop_database(conn: AsyncConnection, *, name: str) -> None:
    """DROP DATABASE, ending its sessions (`conn` in AUTOCOMMIT)."""
    await conn.execute(text(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'))


@dataclass(frozen=True, slots=True)
class ServerLoad:
    connections: int
    max_connections: int
    ungranted_locks: int
    size_bytes: int  # of this connection's database


async def server_load(conn: AsyncConnection) -> ServerLoad:
    """The server's connections, waiting locks and the database's size, in one round trip."""
    row = (
        await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_stat_activity), current_setting('max_connections')::int, "
                "(SELECT count(*) FROM pg_locks WHERE NOT granted), pg_database_size(current_database())"
            )
        )
    ).one()
    return ServerLoad(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def sqlite_quick_check(path: Path) -> str:
    """SQLite's own integrity check of a database file, read-only ("ok" when sound)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()
