"""`cli-trading up --live` against the exchange simulator, through ccxt's own binance class, as a
user runs it: signal and manual orders trade; the exchange's minimums and the live caps refuse
orders by name; a limit order fills partially and a halt cancels the rest; a balance changed
behind the system's back is reported as drift and, past the limit, halts with
`reconciliation_drift`; a flatten sells what the exchange says is held."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e.conftest import System, start_system
from tests.integration.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.e2e
T = TypeVar("T")
PORT_BASE = 38101


def wait_for(fn: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def live_env(sim: Sim, tmp: Path, **extra: str) -> dict[str, str]:
    (tmp / "key").write_text(KEY)
    (tmp / "secret").write_text(SECRET)
    return {
        "TRADING_MODE": "live",
        "EXCHANGE_ID": "binance",
        "EXCHANGE_API_KEY_FILE": str(tmp / "key"),
        "EXCHANGE_API_SECRET_FILE": str(tmp / "secret"),
        "EXCHANGE_URL": sim.url,
        "SYMBOLS": "BTC-USDT,ETH-USDT",
        "MARKET_TIMEFRAME": "1m",
        "MARKET_POLL_S": "2",
        "RECONCILE_INTERVAL_S": "2",
        "RECONCILE_DRIFT_LIMIT": "20",
        "LIVE_MAX_ORDER_NOTIONAL": "1500",
        **extra,
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = start_sim(tmp_path_factory.mktemp("sim"), "--depth", "300")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def live(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("live")
    s = start_system(tmp, port_base=PORT_BASE, extra_env=live_env(sim, tmp), args=["--live", "--yes-live-trading"])
    yield s
    s.stop()


def order(s: System, **body: Any) -> dict[str, Any]:
    """A manual order; its finished run (or the refusal's body)."""
    r = wait_for(
        lambda: (x := httpx.post(s.url() + "/orchestrate/run", json=body, headers=s.admin, timeout=10)).status_code
        != 409 and x or None,  # 409 only before the first price
        what="a price",
    )
    assert r.status_code == 202, r.text
    return run_of(s, r.json()["requestId"])


def run_of(s: System, rid: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (r := httpx.get(f"{s.url()}/orchestrate/run/{rid}").json()).get("outcome") and r,
                    timeout, f"run {rid}")


def executor(s: System) -> dict[str, Any]:
    return httpx.get(s.url("trade-executor") + "/status").json()["exchange"]


def held(sim: Sim, asset: str) -> D:
    b = sim.state()["balances"].get(asset) or {"free": "0", "locked": "0"}
    return D(b["free"]) + D(b["locked"])


def halt(s: System, mode: str = "halt", reason: str = "manual") -> None:
    r = httpx.post(s.url() + "/admin/orchestrate/halt", json={"reason": reason, "mode": mode}, headers=s.admin)
    assert r.status_code == 200, r.text


def unhalt(s: System) -> None:
    r = httpx.post(s.url() + "/admin/orchestrate/unhalt", json={"force": True}, headers=s.admin)
    assert r.status_code == 200, r.text


def test_signal_and_manual_orders_trade_at_the_exchange(live: System, sim: Sim) -> None:
    run = order(live, symbol="BTC-USDT", side="buy", notional=300)
    assert run["outcome"] == "filled", run
    assert exchange_orders_with_id(sim, "BTC-USDT", run["orderId"]) == 1  # at the exchange, not on paper
    # the strategies trade too: orders that no one placed by hand reached the exchange
    audit = lambda: httpx.get(  # noqa: E731
        live.url() + "/admin/audit", params={"action": "run:filled", "limit": 200}, headers=live.admin
    ).json()["events"]
    wait_for(lambda: [e for e in audit() if e["requestId"] != run["requestId"]], 90, "a signal order filled")
    assert executor(live)["reconciliation"]["driftQuote"] == "0"


def test_minimums_and_caps_are_refused_by_name(live: System) -> None:
    assert order(live, symbol="BTC-USDT", side="buy", notional=2)["reason"] == "min_notional"
    assert order(live, symbol="BTC-USDT", side="buy", notional=2000)["reason"] == "cap_order_notional"


def test_a_limit_order_fills_partially_and_a_halt_cancels_the_rest(live: System, sim: Sim) -> None:
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.97")).quantize(D("0.01"))
    r = httpx.post(live.url() + "/orchestrate/run", headers=live.admin, json={
        "symbol": "BTC-USDT", "side": "buy", "qty": "0.2", "type": "limit", "limitPrice": str(limit)})
    assert r.status_code == 202, r.text
    rid = r.json()["requestId"]
    wait_for(lambda: executor(live)["openOrders"], what="the limit order resting")
    assert sim.state()["openOrders"] == 1
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(limit - 1)})  # crosses it: part fills
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})
    halt(live)
    run = run_of(live, rid)
    assert run["outcome"] == "filled" and run["reason"].startswith("cancelled after a partial fill"), run
    assert sim.state()["openOrders"] == 0
    assert executor(live)["openOrders"] == []
    unhalt(live)


def test_drift_is_reported_and_past_the_limit_halts(live: System, sim: Sim) -> None:
    sim.admin("POST", "/sim/balance", {"asset": "USDT", "delta": "-50"})  # a withdrawal we did not make
    pnl = wait_for(lambda: (p := httpx.get(live.url() + "/pnl/status").json())["halted"] and p, 30, "drift halt")
    assert pnl["haltReason"] == "reconciliation_drift" and "USDT" in pnl["haltNote"]
    assert D(pnl["reconciliation"]["driftQuote"]) >= D("50")
    assert 'trading_reconciliation_drift{asset="USDT"}' in httpx.get(live.url("trade-executor") + "/metrics").text
    # the operator explains it, accepts the exchange's balances, unhalts
    r = httpx.post(live.url("trade-executor") + "/admin/exchange/accept-balances", headers=live.admin)
    assert r.status_code == 200 and r.json()["reconciliation"]["driftQuote"] == "0"
    unhalt(live)


def test_flatten_sells_what_the_exchange_holds(live: System, sim: Sim) -> None:
    assert held(sim, "BTC") > D("0.001")
    halt(live, mode="flatten")
    # the ledger's BTC position came from these tests; the exchange also held the account's own
    # 0.1 BTC from before: the flatten sells all of it, what is actually held
    wait_for(lambda: held(sim, "BTC") < D("0.00001"), 60, "flatten")
    unhalt(live)


def up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def exchange_orders_with_id(sim: Sim, symbol: str, order_id: str) -> int:
    """How many orders the exchange has under the order's client order id (asked through ccxt)."""
    import asyncio

    from cli_trading.exchanges.ccxt_adapter import create_ccxt
    from cli_trading.exchanges.markets import ccxt_symbol, client_order_id

    async def count() -> int:
        ex = create_ccxt("binance", KEY, SECRET, url=sim.url, max_rps=20)
        try:
            orders = await ex.fetch_orders(ccxt_symbol(symbol))
        finally:
            await ex.close()
        return sum(1 for o in orders if o.get("clientOrderId") == client_order_id(order_id))

    return asyncio.run(count())
