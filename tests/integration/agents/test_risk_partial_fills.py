"""The risk manager's exposure follows an order's partial fills (issue 15), with the real agent,
Redis and database (PostgreSQL and SQLite): each `pending` exec.status with fills turns that part
of the order's reservation into a position, the rest stays reserved, and the final status ends
the reservation. Asked through risk.requests, answered on risk.responses, as the pipeline does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest

from cli_trading.agents.risk import RiskManager
from cli_trading.config import load_settings
from cli_trading.contracts import HALT_KEY, FillPart, RiskRequest, StatusMsg, Stream, status_id
from cli_trading.halt.state import HaltState

pytestmark = pytest.mark.integration
RULES = """risk:
  max_order_notional: 2500
  max_position_notional: 10000
  max_total_exposure: 3000
"""


@pytest.fixture
async def risk_manager(tmp_path: Path, db_url: str, redis_url: str) -> AsyncIterator[RiskManager]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "risk.yaml").write_text(RULES)
    settings = load_settings(data_dir=tmp_path, config_dir=config, redis_url=redis_url, database_url=db_url)
    agent = RiskManager(settings)
    await agent.start()
    await agent.redis.hset(HALT_KEY, mapping=HaltState().to_redis())  # trading open
    try:
        yield agent
    finally:
        await agent.stop()


async def verdict(agent: RiskManager, rid: str, qty: str) -> str | None:
    """A buy of `qty` BTC-USD at 20000 asked of the risk manager: its rejection reason, or None."""
    msg = RiskRequest(requestId=rid, symbol="BTC-USD", side="buy", confidence=0.9, qty=D(qty), price=D("20000"))
    await agent.bus.publish(Stream.RISK_REQUESTS, msg)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for _, fields in await agent.redis.xrange(Stream.RISK_RESPONSES):
            answer = orjson.loads(fields[b"data"])
            if answer["requestId"] == rid:
                return None if answer["ok"] else str(answer["reason"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no risk response for {rid}")


async def status(agent: RiskManager, rid: str, state: str, qty: str, fills: list[tuple[str, str]]) -> None:
    """exec.status of the order of run `rid` (`qty`: filled so far), with its new fills (trade id,
    qty at 20000); waits until the risk manager applied it (its ledger holds `qty`: the only
    order that fills here)."""
    parts = [FillPart(fillId=t, qty=D(q), price=D("20000")) for t, q in fills]
    st = StatusMsg(
        orderId="o-" + rid, requestId=rid, status=state, symbol="BTC-USD", side="buy", qty=D(qty), price=D("20000")
    )
    st.fills = parts
    st.statusId = status_id(st.orderId, parts) if state == "pending" else st.orderId
    await agent.bus.publish(Stream.STATUS, st)
    deadline = time.monotonic() + 20
    while agent.parts.ledger.qty_of("BTC-USD") != D(qty) or (
        state != "pending" and rid in agent.parts.book.reserved
    ):
        assert time.monotonic() < deadline, f"status {state} of {rid} not applied"
        await asyncio.sleep(0.05)


async def test_exposure_follows_the_fills_of_an_order_still_open(risk_manager: RiskManager) -> None:
    agent = risk_manager
    assert await verdict(agent, "first", "0.1") is None  # 2000 reserved
    assert await verdict(agent, "second", "0.06") == "max_total_exposure"  # 2000 + 1200 > 3000
    await status(agent, "first", "pending", "0.05", [("t1", "0.05")])  # half of it filled: a position of 1000
    # 1000 held + 1000 still reserved + 900: under 3000 (with the whole reservation kept: 3900)
    assert await verdict(agent, "third", "0.045") is None
    assert agent.parts.book.reserved_cash == D("1900")
    await status(agent, "first", "pending", "0.08", [("t2", "0.03")])  # a second part
    assert agent.parts.book.reserved_cash == D("1300")  # 400 of the first, the third's 900
    await status(agent, "first", "filled", "0.1", [("t1", "0.05"), ("t2", "0.03"), ("t3", "0.02")])
    assert agent.parts.book.reserved_cash == D("900") and set(agent.parts.book.reserved) == {"third"}
    # the filled order is a position now: 2000 held + 900 reserved + 200 passes 3000
    assert await verdict(agent, "fourth", "0.01") == "max_total_exposure"
    assert await verdict(agent, "fifth", "0.005") is None
