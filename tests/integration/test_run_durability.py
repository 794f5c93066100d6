"""RunBook.durable against a real database: concurrent callers share transactions, a change is
in the `runs` table when durable() returns, and a failed commit leaves the changes to the next;
and the orchestrator commits a run's sizing before its risk request goes out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.bus import Delivery
from cli_trading.config import load_settings
from cli_trading.contracts import Stream, order_id_for
from cli_trading.control.runs import Run, RunBook
from cli_trading.db import engine as dbengine
from cli_trading.db import repo


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


async def test_a_sized_run_is_committed_before_risk_hears_of_it(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy's signal sizes its run; the sizing is in `runs` before the risk request goes
    out, so a run found at start without a side (`resolve`: hold) never had an order on its way."""
    orc = Orchestrator(load_settings(data_dir=tmp_path, redis_url=redis_url, admin_token="x" * 20))
    await orc.start()
    try:
        run = await orc.start_run(
            symbol="BTC-USD", side=None, qty=None, notional=None, request_id="analysis-1", manual=False
        )
        at_risk: list[tuple[str | None, Decimal | None, str | None]] = []
        publish = orc.bus.publish

        async def watched(stream: str, payload: Any) -> str:
            if stream == Stream.RISK_REQUESTS:
                async with orc.session() as s:
                    row = await repo.get_run(s, request_id=payload.requestId)
                assert row is not None
                at_risk.append((row.side, row.qty, row.order_id))
            return await publish(stream, payload)

        monkeypatch.setattr(orc.bus, "publish", watched)
        signal = {
            "requestId": run.request_id,
            "symbol": "BTC-USD",
            "side": "buy",
            "confidence": 0.9,
            "price": "100",
            "strategy": "sma",
        }
        await orc.on_signals([Delivery("signals", "1-0", signal)])
        assert run.qty is not None and run.qty > 0
        assert at_risk == [("buy", run.qty, order_id_for(run.request_id))]
    finally:
        await orc.stop()
