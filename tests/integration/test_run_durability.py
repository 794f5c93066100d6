"""RunBook.durable against a real database: concurrent callers share transactions, a change is
in the `runs` table when durable() returns, and a failed commit leaves the changes to the next."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from cli_trading.control.runs import Run, RunBook
from cli_trading.db import engine as dbengine


def test_durable_is_a_group_commit_and_survives_a_failed_one(tmp_path: Path) -> None:
    async def go() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
        engine = dbengine.make_engine(url)
        await dbengine.migrate(engine, url)
        sessions = dbengine.sessionmaker(engine)
        book = RunBook()
        commits = 0
        real = sessions

        def counting() -> object:
            nonlocal commits
            commits += 1
            return real()

        async def accept(i: int) -> None:
            r = Run(f"r{i}", "BTC-USD", datetime.now(UTC), manual=True, side="buy")
            book.add(r)
            await book.durable(counting)

        await asyncio.gather(*(accept(i) for i in range(50)))
        async with real() as s:
            assert (await s.execute(text("SELECT count(*) FROM runs"))).scalar() == 50
        assert commits <= 3, f"{commits} transactions for 50 concurrent callers"
        # a commit that fails: the caller sees it, the change is written by the next one
        run = book.get("r1")
        assert run is not None
        book.finish(run, "filled", reason=None, now=datetime.now(UTC))

        def broken() -> object:
            raise OSError("database gone")

        with pytest.raises(OSError):
            await book.durable(broken)
        await book.durable(real)
        async with real() as s:
            outcome = (await s.execute(text("SELECT outcome FROM runs WHERE request_id = 'r1'"))).scalar()
        assert outcome == "filled"
        await engine.dispose()

    asyncio.run(go())
