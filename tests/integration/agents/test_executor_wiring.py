"""The trade executor's parts wired from the settings (agents/executor.py `wire_executor`), on the
real servers: live, the desk started against the rehearsal exchange (`cli-trading exchange-sim`),
its loops running; paper, the paper engine and no desk; a refused key stops the start at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_trading.agents.base import StartupError
from cli_trading.agents.executor import TradeExecutor
from cli_trading.config import load_settings
from cli_trading.exchanges.ccxt_adapter import CcxtExchange
from cli_trading.exchanges.paper import PaperExchange
from tests.support.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = start_sim(tmp_path_factory.mktemp("sim"), "--speed", "0")
    yield s
    s.stop()


def _settings(tmp_path: Path, db_url: str, redis_url: str, **extra: Any) -> Any:
    return load_settings(data_dir=tmp_path, redis_url=redis_url, database_url=db_url, admin_token="x" * 20, **extra)


def _live(sim: Sim, secret: str = SECRET) -> dict[str, Any]:
    return {
        "trading_mode": "live",
        "exchange_url": sim.url,
        "exchange_api_key": KEY,
        "exchange_api_secret": secret,
        "symbols": "BTC-USDT",
    }


async def test_live_the_desk_is_started_and_its_loops_run(
    tmp_path: Path, db_url: str, redis_url: str, sim: Sim
) -> None:
    ex = TradeExecutor(_settings(tmp_path, db_url, redis_url, **_live(sim)))
    await ex.start()
    try:
        parts = ex.parts
        assert parts.desk is not None and parts.paper is None
        assert isinstance(parts.adapter, CcxtExchange) and parts.adapter is parts.desk.ex
        assert "BTC-USDT" in parts.desk.ex.markets  # started: the exchange's markets are read
        names = sorted(t.get_name() for t in ex._tasks)
        assert {"follow", "reconcile", "markets"} <= set(names), names
        assert (await ex.status())["exchange"] == parts.desk.status()
    finally:
        await ex.stop()


async def test_paper_the_engine_on_the_ledger_and_no_desk(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ex = TradeExecutor(_settings(tmp_path, db_url, redis_url))
    await ex.start()
    try:
        parts = ex.parts
        assert isinstance(parts.adapter, PaperExchange) and parts.paper is parts.adapter and parts.desk is None
        assert ex.loops() == [] and "exchange" not in await ex.status()
    finally:
        await ex.stop()


async def test_a_refused_key_stops_the_start_at_once(tmp_path: Path, db_url: str, redis_url: str, sim: Sim) -> None:
    ex = TradeExecutor(_settings(tmp_path, db_url, redis_url, **_live(sim, secret="not-the-secret")))
    began = time.monotonic()
    with pytest.raises(StartupError, match="refused the API key or secret"):
        await ex.start()
    assert time.monotonic() - began < 30  # not the minute of retries a down exchange gets
    await ex.stop()
