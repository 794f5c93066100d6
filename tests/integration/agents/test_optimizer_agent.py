"""The parameter-optimizer agent on a real Redis (its own embedded server): opt.requests in,
opt.results out, with walk-forward figures, through a pool of worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli_trading.agents.optimizer import ParameterOptimizer
from cli_trading.config import load_settings
from cli_trading.contracts import OptRequest, Stream, dlq_of
from cli_trading.embedded_redis import EmbeddedRedis
from cli_trading.market.bars import load_bars
from cli_trading.market.datacheck import Row
from cli_trading.market.download import write_csv
from tests.support import ports


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def agent(tmp_path: Path, redis_url: str) -> AsyncIterator[ParameterOptimizer]:
    data = tmp_path / "candles"
    rows = [Row(0, b.ts, b.open, b.high, b.low, b.close, b.volume) for b in load_bars("BTC-USD")[:1600]]
    write_csv(data / "BTC-USD_1h.csv", rows)
    settings = load_settings(redis_url=redis_url, data_dir=tmp_path, market_data_dir=data, port_base=ports.reserve(10))
    a = ParameterOptimizer(settings)
    await a.start()
    yield a
    await a.stop()


async def results(a: ParameterOptimizer, n: int, wait_s: float = 120) -> list[dict[str, Any]]:
    assert a.bus is not None
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        entries = await a.bus.redis.xrange(Stream.OPT_RESULTS)
        if len(entries) >= n:
            return [orjson.loads(f[b"data"]) for _, f in entries]
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {n} opt.results after {wait_s}s; status {await a.status()}")


async def test_a_request_gets_walk_forward_proposals_that_beat_the_current_set(agent: ParameterOptimizer) -> None:
    assert agent.bus is not None
    await agent.bus.publish(Stream.OPT_REQUESTS, OptRequest(requestId="r-1", strategy="trend", symbol="BTC-USD"))
    (res,) = await results(agent, 1)
    assert (res["requestId"], res["strategy"], res["symbol"]) == ("r-1", "trend", "BTC-USD")
    assert res["current"] == {"fast": 12, "slow": 26, "min_spread_pct": 0.05, "full_confidence_spread_pct": 1.0}
    wf = res["walkForward"]
    assert len(wf["windows"]) == 4 and res["evaluated"] == 24 and res["bars"] == 1600
    for w in wf["windows"]:
        assert {"inSample", "outOfSample", "current", "params"} <= set(w)
    for p in res["proposals"]:
        assert p["params"] != res["current"]
        assert p["score"] == pytest.approx(p["outOfSample"]["score"], abs=1e-6)
        assert p["outOfSample"]["score"] > p["currentOutOfSample"]["score"]
        assert p["inSample"]["bars"] > 0 and p["outOfSample"]["bars"] > 0
    status = await agent.status()
    assert status["completed"] == 1 and status["last"]["requestId"] == "r-1"


async def test_a_request_that_cannot_be_searched_is_answered_not_retried(agent: ParameterOptimizer) -> None:
    assert agent.bus is not None
    await agent.bus.publish(Stream.OPT_REQUESTS, OptRequest(requestId="r-2", strategy="trend", symbol="DOGE-USD"))
    await agent.bus.publish(
        Stream.OPT_REQUESTS, OptRequest(requestId="r-3", strategy="trend", symbol="BTC-USD", current={"fast": 99})
    )
    first, second = await results(agent, 2)
    assert first["proposals"] == [] and "no market data for 'DOGE-USD'" in first["error"]
    assert second["proposals"] == [] and "must be shorter than slow" in second["error"]
    assert await agent.bus.redis.xlen(dlq_of(Stream.OPT_REQUESTS)) == 0
    assert (await agent.status())["failed"] == 2


async def test_a_wrong_shaped_request_is_dead_lettered_at_once(agent: ParameterOptimizer) -> None:
    assert agent.bus is not None
    await agent.bus.publish(Stream.OPT_REQUESTS, {"requestId": "r-4", "strategy": "trend"})  # no symbol
    dlq = dlq_of(Stream.OPT_REQUESTS)
    deadline = asyncio.get_running_loop().time() + 30
    while not await agent.bus.redis.xlen(dlq):
        assert asyncio.get_running_loop().time() < deadline, "the wrong-shaped request never reached the DLQ"
        await asyncio.sleep(0.05)
    [(_, fields)] = await agent.bus.redis.xrange(dlq)
    entry = orjson.loads(fields[b"data"])
    assert entry["failures"] == 1 and "invalid OptRequest" in entry["error"]  # not retried first
    assert (await agent.status())["completed"] == 0
