"""The risk manager's, portfolio manager's and notification manager's parts wired from the settings
(`wire_risk`, `wire_portfolio`, `wire_notifier`) by the agents' own start, on the real Redis and
each database: the ledgers are what the database holds, the rules and the policy the configuration
folder's, the incidents written to the database and announced on notify.events; the
orchestrator's overview reads its parts."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli_trading.agents.base import StartupError
from cli_trading.agents.notifier import NotificationManager
from cli_trading.agents.orchestrator import Orchestrator
from cli_trading.agents.portfolio import PortfolioManager
from cli_trading.agents.risk import RiskManager
from cli_trading.config import load_settings
from cli_trading.contracts import OrderMsg, Stream
from cli_trading.db import repo
from cli_trading.exchanges.desk import ledger_row
from cli_trading.exchanges.ledger_rows import fill_row

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, db_url: str, redis_url: str, **extra: Any) -> Any:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "risk.yaml").write_text("risk:\n  max_order_notional: 123\n")
    return load_settings(
        data_dir=tmp_path, config_dir=config, redis_url=redis_url, database_url=db_url, admin_token="x" * 20, **extra
    )


async def _a_filled_order_and_a_mark(s: Any) -> str:
    """Half a BTC bought at 100 (fee 0.05), marked at 120 since: written as the agents write them."""
    first = PortfolioManager(s)
    await first.start()  # the schema
    try:
        qty, price = Decimal("0.5"), Decimal(100)
        m = OrderMsg(orderId="o-1", requestId="r-1", symbol="BTC-USD", side="buy", qty=qty, price=price)
        now = first.clock()
        final = {"order_id": "o-1", "status": "filled", "price": Decimal(100), "fee": Decimal("0.05"), "reason": None}
        async with first.session() as sess, sess.begin():
            await repo.claim_orders(sess, rows=[ledger_row(m, now)])
            fill = fill_row(m, now, trade_id="t-1", qty=m.qty, price=Decimal(100), fee=Decimal("0.05"))
            await repo.settle_orders(sess, orders=[{**final, "updated_at": now}], fills=[fill])
            await repo.save_marks(sess, marks={"BTC-USD": (Decimal(120), now)})
        return now.date().isoformat()
    finally:
        await first.stop()


async def test_risk_and_portfolio_start_from_the_ledger_the_database_holds(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    s = _settings(tmp_path, db_url, redis_url)
    today = await _a_filled_order_and_a_mark(s)
    risk, portfolio = RiskManager(s), PortfolioManager(s)
    await risk.start()
    await portfolio.start()
    try:
        for ledger in (risk.parts.ledger, portfolio.parts.ledger):
            assert ledger.qty_of("BTC-USD") == Decimal("0.5") and ledger.price_of("BTC-USD") == Decimal(120)
            assert ledger.snapshot().cash == s.starting_cash - Decimal("50.05")
        assert risk.parts.ledger is not portfolio.parts.ledger  # each agent keeps its own
        assert risk.parts.book.day_notional(today) == Decimal(50)  # the daily cap survives the restart
        assert risk.parts.rules.max_order_notional == Decimal(123)  # the configuration folder's risk.yaml
        assert risk.parts.gate.redis is risk.redis and not risk.parts.book.reserved
        assert (await portfolio.status())["positions"] == 1
    finally:
        await risk.stop()
        await portfolio.stop()


async def test_the_notifier_opens_incidents_in_the_database_and_announces_them(
    tmp_path: Path, db_url: str, redis_url: str, redis_client: Any
) -> None:
    nm = NotificationManager(_settings(tmp_path, db_url, redis_url))
    await nm.start()
    try:
        p = nm.parts
        assert p.dispatcher.incidents is p.incidents and p.dispatcher.cfg is p.cfg is p.incidents.cfg
        assert p.watchdog.failures_needed == p.cfg.watchdog.failures
        opened = await p.incidents.open(
            title="wiring", severity="P3", category="ops", impact=None, commander=None, services=[], actor="test"
        )
        assert (await p.incidents.get(opened["id"]))["title"] == "wiring"
        events = [orjson.loads(f[b"data"]) for _, f in await redis_client.xrange(Stream.NOTIFY)]
        assert any(e["type"] == "incident.opened" and e["context"]["incidentId"] == opened["id"] for e in events)
    finally:
        await nm.stop()


async def test_a_broken_policy_file_stops_the_notifiers_start_naming_it(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    policy = tmp_path / "notifications.yaml"
    policy.write_text("no_such_key: 1\n")
    nm = NotificationManager(_settings(tmp_path, db_url, redis_url, notify_config=str(policy)))
    with pytest.raises(StartupError, match="notifications.yaml"):
        await nm.start()
    await nm.stop()


async def test_the_orchestrators_overview_reads_its_halt_and_pnl(
    tmp_path: Path, db_url: str, redis_url: str, port_block: Callable[[int], int]
) -> None:
    orc = Orchestrator(_settings(tmp_path, db_url, redis_url, port_base=port_block(10)))
    await orc.start()
    try:
        parts = orc.parts
        assert parts.overview.runs is parts.runs
        parts.halts.halt(reason="manual", mode="reduce_only", actor="test", source=None, note="wiring")
        doc = await parts.overview.build(actor="test")
        assert doc["trading"]["halted"] and doc["trading"]["haltReason"] == "manual"
        assert doc["pnl"]["equity"] == orc.pnl()["equity"] == orc.settings.starting_cash
        client = parts.overview.client  # the agents were asked over HTTP (none answers here)
        assert client is not None and not client.is_closed
    finally:
        await orc.stop()
    assert client.is_closed  # closed with the agent
