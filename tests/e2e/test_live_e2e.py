"""`cli-trading up --live` against the exchange simulator, through ccxt's own binance class, as a
user runs it: signal and manual orders trade; the exchange's minimums and the live caps refuse
orders by name; a limit order fills in parts while open (each its own fill row, /pnl/status
following), then in full; another fills partially and a halt cancels the rest; a balance changed
behind the system's back is reported as drift and, past the limit, halts with
`reconciliation_drift`; a flatten sells what the exchange says is held. On a system whose
strategies never signal (the test's order is the only one to take a fault), an order whose answer
is lost is found by its client order id with no drift meanwhile, and a kill -9 of the executor
while the exchange holds its answer leaves exactly one order and one set of fills."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cli_trading.contracts import order_id_for
from tests.e2e.conftest import System, start_system
from tests.e2e.test_halts_e2e import quiet_strategies
from tests.support import pnl
from tests.support.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.e2e
T = TypeVar("T")


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
    s = start_system(tmp, extra_env=live_env(sim, tmp), args=["--live", "--yes-live-trading"])
    yield s
    s.stop()


def place(s: System, **body: Any) -> httpx.Response:
    """A manual order placed (202), once the system has a price."""
    r = wait_for(
        lambda: (
            (x := httpx.post(s.url() + "/orchestrate/run", json=body, headers=s.admin, timeout=10)).status_code != 409
            and x
            or None
        ),  # 409 only before the first price
        what="a price",
    )
    assert r.status_code == 202, r.text
    return r


def order(s: System, **body: Any) -> dict[str, Any]:
    """A manual order; its finished run (or the refusal's body)."""
    return run_of(s, place(s, **body).json()["requestId"])


def run_of(s: System, rid: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (r := httpx.get(f"{s.url()}/orchestrate/run/{rid}").json()).get("outcome") and r, timeout, f"run {rid}"
    )


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


class TestAnOrderInFlight:
    """On a system of its own, with its own exchange, whose strategies never signal: the fault the
    test sets up is taken by the test's own order, never by a strategy's. First in the module, so
    that this system is stopped before the module's system starts (one system at a time)."""

    @pytest.fixture(scope="class")
    def qsim(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
        s = start_sim(tmp_path_factory.mktemp("qsim"), "--depth", "300")
        yield s
        s.stop()

    @pytest.fixture(scope="class")
    def quiet(self, qsim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
        tmp = tmp_path_factory.mktemp("quiet")
        config = quiet_strategies(tmp / "config")
        s = start_system(
            tmp, extra_env=live_env(qsim, tmp), args=["--live", "--yes-live-trading", "--config", str(config)]
        )
        yield s
        s.stop()

    def test_an_order_whose_answer_is_lost_is_found_with_no_drift_meanwhile(self, quiet: System, qsim: Sim) -> None:
        """The exchange fills the order and loses the answer (ccxt gives up after 10 s, then the
        executor asks by client order id). Reconciliation runs every 2 s meanwhile: the filled order
        not yet recorded is not drift, so no `reconciliation_drift` halt."""
        qsim.faults(lose_answer_next=1, lose_answer_mode="timeout", lose_answer_hold_s=30, paths=["/api/v3/order"])
        r = place(quiet, symbol="BTC-USDT", side="buy", notional=300)
        rid = r.json()["requestId"]
        seen: list[dict[str, Any]] = []

        def done() -> dict[str, Any] | None:
            seen.append(httpx.get(quiet.url() + "/pnl/status").json())
            return run if (run := httpx.get(f"{quiet.url()}/orchestrate/run/{rid}").json()).get("outcome") else None

        run = wait_for(done, 60, "the order resolved")
        assert run["outcome"] == "filled", run
        assert [p["haltReason"] for p in seen if p["halted"]] == []
        reports = [p["reconciliation"] for p in seen if p.get("reconciliation")]
        assert reports and [r for r in reports if r["driftQuote"] != "0"] == []
        assert qsim.state()["faults"]["plan"]["lose_answer_next"] == 0  # our order took the fault
        assert exchange_orders_with_id(qsim, "BTC-USDT", run["orderId"]) == 1
        assert_one_row_per_trade(quiet, run["orderId"])
        qsim.admin("DELETE", "/sim/faults")

    def test_kill_9_of_the_executor_while_the_answer_is_on_its_way(self, quiet: System, qsim: Sim) -> None:
        """The exchange took the order, the answer is held back; the executor dies (kill -9) before
        it comes. After its restart the order is found by its client order id: exactly one order at
        the exchange, one set of fills, the run filled."""
        qsim.faults(lose_answer_next=1, lose_answer_mode="timeout", lose_answer_hold_s=60, paths=["/api/v3/order"])
        orders_before = qsim.state()["orders"]
        r = place(quiet, symbol="ETH-USDT", side="buy", notional=200)
        rid = r.json()["requestId"]
        order_id = order_id_for(rid)
        # the exchange has it and holds the answer: the executor is between send and answer
        wait_for(lambda: exchange_orders_with_id(qsim, "ETH-USDT", order_id) == 1, 30, "the order at the exchange")
        assert qsim.state()["faults"]["plan"]["lose_answer_next"] == 0  # ours took the fault
        pid = json.loads((quiet.data_dir / "runtime.json").read_text())["agents"]["trade-executor"]
        os.kill(pid, signal.SIGKILL)
        run = run_of(quiet, rid, timeout=120)  # restarted by `up`, resolved by client order id
        assert run["outcome"] == "filled", run
        wait_for(lambda: executor_pid(quiet) not in (None, pid), 60, "a new executor")
        wait_for(lambda: up(quiet.url("trade-executor") + "/health"), 60, "the executor back")
        # never sent again: not by the restarted executor, and one order with its id at the exchange
        sent = httpx.get(quiet.url("trade-executor") + "/admin/exec/adapter", headers=quiet.admin).json()["orders"]
        assert order_id not in [o["orderId"] for o in sent]
        assert exchange_orders_with_id(qsim, "ETH-USDT", order_id) == 1
        assert qsim.state()["orders"] == orders_before + 1  # and nothing else was placed
        assert_one_row_per_trade(quiet, order_id)
        qsim.admin("DELETE", "/sim/faults")


def assert_one_row_per_trade(s: System, order_id: str) -> None:
    """One set of fills: a ledger fill row for each trade the exchange made for the order (a
    market order may fill in several), none twice."""
    trades = [t for t, _ in fill_rows(s, order_id)]
    assert trades and len(set(trades)) == len(trades), trades
    assert sorted(trades) == sorted(exchange_trades(s, order_id))


def executor_pid(s: System) -> int | None:
    try:
        return int(json.loads((s.data_dir / "runtime.json").read_text())["agents"]["trade-executor"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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


@pytest.fixture
def frozen(sim: Sim) -> Iterator[None]:
    """The exchange's clock frozen: its prices move only when the test moves them, each
    POST /sim/price one move filling one part (at most its `depth`) of a resting order."""
    sim.admin("POST", "/sim/clock", {"speed": 0})
    try:
        yield
    finally:
        sim.admin("POST", "/sim/clock", {"speed": 60})


def limit_buy(s: System, price: D, qty: str) -> tuple[str, str]:
    """A resting limit buy placed (202); (request id, order id) once the executor follows it."""
    r = httpx.post(
        s.url() + "/orchestrate/run",
        headers=s.admin,
        json={"symbol": "BTC-USDT", "side": "buy", "qty": qty, "type": "limit", "limitPrice": str(price)},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["requestId"]
    oid = order_id_for(rid)
    wait_for(lambda: oid in executor(s)["openOrders"], what="the limit order resting")
    return rid, oid


def move(sim: Sim, price: D, depth: str) -> list[D]:
    """One price move at the exchange: the quantities of the trades it made."""
    done = sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price), "depth": depth})
    return [D(t["qty"]) for t in done["trades"]]


def test_a_limit_order_fills_in_parts_while_open_each_a_fill_row(live: System, sim: Sim, frozen: None) -> None:
    """Two partial fills over two moves, each seen on its own while the order is open: its own
    fill row (the exchange's trade), /pnl/status following it; then the rest fills and the run
    ends filled with a row per trade."""
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.97")).quantize(D("0.01"))
    rid, oid = limit_buy(live, limit, "0.2")
    parts: list[D] = []
    for _ in range(2):
        (part,) = move(sim, limit - 1, "300")  # crosses it: about 300 USDT of it fills
        parts.append(part)
        wait_for(lambda: [q for _, q in fill_rows(live, oid)] == parts, 30, f"fill row {len(parts)}")
        wait_for(lambda: pnl_is_the_fills(live), 30, f"/pnl/status to follow part {len(parts)}")
        assert oid in executor(live)["openOrders"] and sim.state()["openOrders"] == 1  # still open
        assert not httpx.get(f"{live.url()}/orchestrate/run/{rid}").json().get("outcome")  # not final yet
    rest = move(sim, limit - 1, "1000000")
    assert rest and sum([*parts, *rest]) == D("0.2"), (parts, rest)
    run = run_of(live, rid)
    assert run["outcome"] == "filled", run
    assert sim.state()["openOrders"] == 0 and oid not in executor(live)["openOrders"]
    rows = fill_rows(live, oid)
    assert [q for _, q in rows] == [*parts, *rest]  # a row per trade, in order, none twice
    assert sorted(t for t, _ in rows) == sorted(exchange_trades(live, oid))
    wait_for(lambda: pnl_is_the_fills(live), 30, "/pnl/status to agree with the fills table")
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})


def test_a_limit_order_fills_partially_and_a_halt_cancels_the_rest(live: System, sim: Sim, frozen: None) -> None:
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.97")).quantize(D("0.01"))
    rid, oid = limit_buy(live, limit, "0.2")
    assert sim.state()["openOrders"] == 1
    (part,) = move(sim, limit - 1, "300")  # crosses it: one part fills, the clock moves nothing more
    wait_for(lambda: [q for _, q in fill_rows(live, oid)] == [part], 30, "the part's fill row")
    halt(live)
    run = run_of(live, rid)
    assert run["outcome"] == "filled" and run["reason"].startswith("cancelled after a partial fill"), run
    assert sim.state()["openOrders"] == 0
    assert executor(live)["openOrders"] == []
    parts = fill_rows(live, oid)  # one row per trade at the exchange, none twice
    assert sorted(t for t, _ in parts) == sorted(exchange_trades(live, oid))
    assert [q for _, q in parts] == [part] and part == D(run["reason"].rsplit(" ", 1)[1])
    wait_for(lambda: pnl_is_the_fills(live), 30, "/pnl/status to agree with the fills table")
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})
    unhalt(live)


def fill_rows(s: System, order_id: str) -> list[tuple[str, D]]:
    with sqlite3.connect(s.data_dir / "trading.db") as db:
        rows = db.execute("select trade_id, qty from fills where order_id = ? order by id", (order_id,)).fetchall()
    return [(str(t), D(q)) for t, q in rows]


def exchange_trades(s: System, order_id: str) -> list[str]:
    with sqlite3.connect(s.data_dir / "trading.db") as db:
        rows = db.execute("select trade_id from exchange_fills where order_id = ?", (order_id,)).fetchall()
    return [str(t) for (t,) in rows]


def pnl_is_the_fills(s: System) -> bool:
    """/pnl/status (the orchestrator's ledger, from exec.status) = a recomputation from `fills`."""
    with sqlite3.connect(s.data_dir / "trading.db") as db:
        rows = db.execute(pnl.FILLS_SQL).fetchall()
    got = httpx.get(s.url() + "/pnl/status", timeout=10).json()
    return not pnl.mismatches(got, rows, starting_cash=D(10000))  # STARTING_CASH's default


def test_drift_is_reported_and_past_the_limit_halts(live: System, sim: Sim) -> None:
    sim.admin("POST", "/sim/balance", {"asset": "USDT", "delta": "-50"})  # a withdrawal we did not make
    pnl = wait_for(lambda: (p := httpx.get(live.url() + "/pnl/status").json())["halted"] and p, 30, "drift halt")
    assert pnl["haltReason"] == "reconciliation_drift" and "USDT" in pnl["haltNote"]
    assert D(pnl["reconciliation"]["driftQuote"]) >= D("50")
    assert 'trading_reconciliation_drift{asset="USDT"}' in httpx.get(live.url("trade-executor") + "/metrics").text
    # and `cli-trading status` says it, naming the asset (exit 1: trading is halted)
    env = {**live.env, "PORT_BASE": str(live.port_base), "COLUMNS": "200"}
    status = subprocess.run(
        [sys.executable, "-m", "cli_trading", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 1, status.stdout + status.stderr
    assert "reconciliation  drift" in status.stdout and "USDT: exchange" in status.stdout, status.stdout
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
