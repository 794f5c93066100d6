"""Engine creation and migrations (Alembic, applied on start under a lock so that several
processes starting together migrate once)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
ADVISORY_LOCK = 7_001_2026


class DatabaseUnavailable(RuntimeError):
    pass


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def json_text(obj: Any) -> str:
    """JSON columns (audit details, halt records) written with orjson: the stdlib encoder was a
    few percent of every agent's CPU under load. Decimals become strings, as in messages."""
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    kw.setdefault("json_serializer", json_text)
    if is_sqlite(url):
        path = make_url(url).database
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kw)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 10)
    # No pre-ping (a round trip before every transaction): after a restart of the server the
    # first statement on a stale connection fails, SQLAlchemy then invalidates the whole pool,
    # and the caller's retry (the bus keeps the batch, write-behind keeps its rows) reconnects.
    return create_async_engine(url, pool_pre_ping=False, **kw)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def short_lived(url: str, *, connect_timeout_s: float | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine for one piece of work (the command line's tools: backup, restore, the security
    audit, health, secret rotation), made by `make_engine` like the agents' and disposed after.
    `connect_timeout_s`: how long connecting may take (PostgreSQL; a health check must not hang)."""
    kw: dict[str, Any] = {}
    if connect_timeout_s is not None and not is_sqlite(url):
        kw["connect_args"] = {"timeout": connect_timeout_s}
    engine = make_engine(url, **kw)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def one_session(url: str) -> AsyncIterator[AsyncSession]:
    """A session on a `short_lived` engine (the caller begins a transaction if it writes)."""
    async with short_lived(url) as engine, sessionmaker(engine)() as session:
        yield session


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@asynccontextmanager
async def _migration_lock(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    if is_sqlite(url):
        db = make_url(url).database or ":memory:"
        with open(f"{db}.migrate.lock", "w") as fh:  # noqa: ASYNC230 - a tiny lock file
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})


async def migrate(engine: AsyncEngine, url: str) -> None:
    """Bring the schema to the newest revision."""

    def upgrade(conn: Any) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    async with _migration_lock(engine, url), engine.begin() as conn:
        await conn.run_sync(upgrade)


async def check(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 3)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable now"
        return False
