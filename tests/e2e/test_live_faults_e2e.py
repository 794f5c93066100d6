"""`cli-trading up --live` against the exchange simulator when the exchange misbehaves, end to end:
storms of 429s (waited out under the request ceiling, given up on past
EXCHANGE_RATE_LIMIT_GIVE_UP_S, never holding up a halt's cancels), an order id the exchange already
has (that order, or a clear rejection when it is another market's), an order placed at the
exchange by hand and adopted (`EXCHANGE_UNKNOWN_ORDERS=adopt`), and a key the exchange refuses.
One system whose strategies never signal, so that every order and every fault is the test's own."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cli_trading.contracts import order_id_for
from cli_trading.exchanges.ccxt_adapter import create_ccxt
from cli_trading.exchanges.markets import ccxt_symbol, client_order_id
from tests.e2e.conftest import System, start_system
from tests.e2e.test_halts_e2e import quiet_strategies
from tests.e2e.test_live_e2e import exchange_orders_with_id, live_env, pnl_is_the_fills, wait_for
from tests.support.simexchange import KEY, SECRET, Sim, start_sim

pytestmark = pytest.mark.e2e
T = TypeVar("T")
STARTING_CASH = D("10000")
MAX_RPS = 10  # EXCHANGE_MAX_RPS: the trade executor 8 a second, the candle feed 2
GIVE_UP_S = 12  # EXCHANGE_RATE_LIMIT_GIVE_UP_S


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = start_sim(tmp_path_factory.mktemp("fsim"), "--depth", "300")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def live(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("flive")
    env = live_env(
        sim,
        tmp,
        EXCHANGE_UNKNOWN_ORDERS="adopt",
        STARTING_CASH=str(STARTING_CASH),
        RECONCILE_DRIFT_LIMIT="500",  # drift halts are test_live_e2e's; here a false one would show
        EXCHANGE_MAX_RPS=str(MAX_RPS),
        EXCHANGE_RATE_LIMIT_GIVE_UP_S=str(GIVE_UP_S),
        EXCHANGE_RESOLVE_WINDOW_S="5",  # no lost answers here: a duplicate id's lookup ends sooner
    )
    config = quiet_strategies(tmp / "config")
    s = start_system(tmp, extra_env=env, args=["--live", "--yes-live-trading", "--config", str(config)])
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def no_faults(sim: Sim) -> Iterator[None]:
    sim.admin("DELETE", "/sim/faults")
    yield
    sim.admin("DELETE", "/sim/faults")


def manual(s: System, rid: str, **body: Any) -> dict[str, Any]:
    """A manual order under the request id `rid`, accepted (202) once the system has a price."""

    def post() -> httpx.Response | None:
        r = httpx.post(
            s.url() + "/orchestrate/run", json=body, headers={**s.admin, "X-Request-Id": rid}, timeout=10
        )
        return None if r.status_code == 409 else r  # 409 only before the first price

    r = wait_for(post, 60, "a price")
    assert r.status_code == 202, r.text
    return dict(r.json())


def watch_halts(s: System, until: Callable[[], T | None], timeout: float, what: str) -> tuple[T, list[str]]:
    """Wait for `until`, noting every halt reason /pnl/status shows meanwhile."""
    halts: list[str] = []

    def step() -> T | None:
        p = httpx.get(s.url() + "/pnl/status", timeout=10).json()
        if p["halted"]:
            halts.append(p["haltReason"])
        return until()

    return wait_for(step, timeout, what), halts


def done(s: System, rid: str) -> dict[str, Any] | None:
    run = httpx.get(f"{s.url()}/orchestrate/run/{rid}", timeout=10).json()
    return run if run.get("outcome") else None


def at_exchange(sim: Sim, call: Callable[[Any], Awaitable[T]]) -> T:
    """Something done at the exchange by hand, through ccxt (not through the system)."""

    async def go() -> T:
        ex = create_ccxt("binance", KEY, SECRET, url=sim.url, max_rps=20)
        try:
            await ex.load_markets()
            return await call(ex)
        finally:
            await ex.close()

    return asyncio.run(go())


def db_rows(s: System, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(s.data_dir / "trading.db") as db:
        return list(db.execute(sql, args).fetchall())


def metric(s: System, agent: str, name: str) -> float:
    for line in httpx.get(s.url(agent) + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def sim_log(sim: Sim, event: str) -> list[dict[str, Any]]:
    lines = (sim.data_dir / "logs" / "exchange-sim.log").read_text().splitlines()
    return [e for e in (json.loads(x) for x in lines if x.startswith("{")) if e.get("event") == event]


def agent_log(s: System, agent: str) -> list[dict[str, Any]]:
    lines = (s.data_dir / "logs" / f"{agent}.log").read_text().splitlines()
    return [json.loads(x) for x in lines if x.startswith("{")]


def reconciled_clean(s: System, after: datetime) -> dict[str, Any] | None:
    """A reconciliation report newer than `after` with no drift."""
    rec = httpx.get(s.url() + "/pnl/status", timeout=10).json().get("reconciliation") or {}
    fresh = rec.get("ts") and datetime.fromisoformat(rec["ts"]) > after
    return rec if fresh and rec["driftQuote"] == "0" and not rec["unknownOrders"] else None


def now_at(s: System) -> datetime:
    return datetime.fromisoformat(httpx.get(s.url() + "/pnl/status", timeout=10).json()["asOf"])


def test_a_429_storm_is_waited_out_and_the_order_fills_once(live: System, sim: Sim) -> None:
    """Nine 429s in a row on the order endpoint (Retry-After 1 s): more than one request's eight
    retries, within the give-up time; the executor waits as told, asks by client order id before
    sending again, and the order fills once. The backoffs show in the executor's status, metrics
    and log; no halt."""
    backoffs = metric(live, "trade-executor", "exchange_rate_limit_backoffs_total")
    orders_before, injected = sim.state()["orders"], sim.state()["faults"]["injected"]["throttle"]
    sim.faults(throttle_next=9, retry_after_s=1, paths=["/api/v3/order"])
    rid = f"storm-{uuid.uuid4().hex[:8]}"
    manual(live, rid, symbol="BTC-USDT", side="buy", notional=100)
    run, halts = watch_halts(live, lambda: done(live, rid), 60, "the order through the storm")
    assert run["outcome"] == "filled", run
    assert halts == []
    # the storm happened, to this order: every 429 taken, and exactly one order at the exchange
    assert sim.state()["faults"]["injected"]["throttle"] - injected == 9
    assert exchange_orders_with_id(sim, "BTC-USDT", order_id_for(rid)) == 1
    assert sim.state()["orders"] == orders_before + 1
    assert len(db_rows(live, "select * from fills where order_id = ?", order_id_for(rid))) == 1
    # each 429 waited out: the refused requests are at least Retry-After apart
    times = sorted(datetime.fromisoformat(e["ts"]).timestamp() for e in sim_log(sim, "fault_injected")
                   if e.get("status") == 429)[-9:]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.9, gaps
    # visible: metric, the executor's status and its log
    assert metric(live, "trade-executor", "exchange_rate_limit_backoffs_total") - backoffs >= 9
    assert httpx.get(live.url("trade-executor") + "/status").json()["exchange"]["rateLimitBackoffs"] >= 9
    logged = [e for e in agent_log(live, "trade-executor") if e["event"] == "rate limited by the exchange, backing off"]
    assert len(logged) >= 9 and {e["waitS"] for e in logged[-9:]} == {1.0}  # as long as Retry-After said


def test_in_a_429_storm_no_second_has_more_requests_than_the_ceiling(live: System, sim: Sim) -> None:
    """Every request to the exchange answered 429 for a few seconds, with Retry-After 0 (ask
    again at once): only the system's own pacing holds it back. Three orders go through the storm
    (each asked about by client order id, sent again once the storm is over, filled once); the
    simulator's record of when each request arrived shows no one-second window with more than
    EXCHANGE_MAX_RPS requests, from the trade executor and the candle feed together.

    The bound is exact, not a timing guess with a margin to tune: each process's pacer counts a
    request from when it leaves until a second after its answer came back, and the simulator
    records the arrival in between, so any share + 1 requests of one process arrive more than a
    second apart (8 + 2 = 10). Seeing exactly 10 is the pacing using all it may; 11 is a breach,
    and the same count over an unpaced burst shows the simulator would see one."""
    started = time.time()
    injected = sim.state()["faults"]["injected"]["throttle"]
    sim.faults(throttle_for_s=8, retry_after_s=0)
    rids = [f"ceil-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for rid in rids:
        manual(live, rid, symbol="BTC-USDT", side="buy", notional=50)
    runs = [wait_for(lambda rid=rid: done(live, rid), 60, f"run {rid}") for rid in rids]
    seen = sim.admin("GET", f"/sim/requests?since={started}&until={time.time()}")  # before ours below
    assert [r["outcome"] for r in runs] == ["filled"] * 3, runs
    for rid in rids:
        assert exchange_orders_with_id(sim, "BTC-USDT", order_id_for(rid)) == 1
    storm = sim.state()["faults"]["injected"]["throttle"] - injected
    assert storm >= 10, storm  # the system kept asking through the storm, and was refused
    assert seen["count"] > storm
    assert 0 < seen["maxPerSecond"] <= MAX_RPS, densest(seen["requests"])
    signed = [r for r in seen["requests"] if r["key"] == KEY]  # the trade executor's alone
    assert seen["byKey"][KEY]["maxPerSecond"] <= MAX_RPS * 0.8, densest(signed)
    # the instrument: requests sent unpaced, faster than the ceiling, are counted as such
    burst_from = time.time()
    asyncio.run(unpaced(sim, MAX_RPS + 5))
    assert sim.admin("GET", f"/sim/requests?since={burst_from}")["maxPerSecond"] > MAX_RPS


def densest(requests: list[dict[str, Any]], window_s: float = 1.0) -> list[str]:
    """The requests of the busiest one-second window (what a failure shows)."""
    times = sorted(r["t"] for r in requests)
    best: list[float] = []
    for i, t in enumerate(times):
        inside = [u for u in times[i:] if u < t + window_s]
        best = inside if len(inside) > len(best) else best
    return [f"{u - best[0]:.3f}" for u in best]


async def unpaced(sim: Sim, n: int) -> None:
    """`n` requests at once, unpaced (the simulator records each as it arrives, answered or not)."""
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(client.get(sim.url + "/api/v3/ping") for _ in range(n)))


def test_a_storm_past_the_give_up_time_rejects_the_order_rate_limited(live: System, sim: Sim) -> None:
    """New orders refused with 429 for longer than EXCHANGE_RATE_LIMIT_GIVE_UP_S: the order is
    rejected `rate_limited` (every attempt was refused: nothing at the exchange), with no halt."""
    orders_before = sim.state()["orders"]
    sim.faults(throttle_for_s=120, retry_after_s=1, paths=["/api/v3/order"], methods=["POST"])
    rid = f"giveup-{uuid.uuid4().hex[:8]}"
    sent = time.monotonic()
    manual(live, rid, symbol="BTC-USDT", side="buy", notional=50)
    run, halts = watch_halts(live, lambda: done(live, rid), GIVE_UP_S + 30, "the run")
    assert run["outcome"] == "rejected" and run["reason"].startswith("rate_limited"), run
    assert time.monotonic() - sent >= GIVE_UP_S
    assert halts == []
    assert sim.state()["faults"]["stormLeftS"] > 0  # given up while the storm went on
    assert sim.state()["orders"] == orders_before
    assert exchange_orders_with_id(sim, "BTC-USDT", order_id_for(rid)) == 0


def test_a_halt_during_a_storm_cancels_resting_orders_without_waiting_for_it(live: System, sim: Sim) -> None:
    """A limit order rests; then new orders are refused with 429 (Binance's order-count limit:
    placing is refused, cancelling is not) with Retry-After 6 s, and a manual order starts waiting
    the storm out. A halt then cancels the resting order at once: the waiting order does not hold
    the desk meanwhile. The waiting order is not sent after the halt: rejected `halted`."""
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.9")).quantize(D("0.01"))
    resting = f"rest-{uuid.uuid4().hex[:8]}"
    manual(live, resting, symbol="BTC-USDT", side="buy", qty="0.002", type="limit", limitPrice=str(limit))
    wait_for(lambda: order_id_for(resting) in open_orders(live), 30, "the limit order resting")
    injected = sim.state()["faults"]["injected"]["throttle"]
    sim.faults(throttle_for_s=120, retry_after_s=6, paths=["/api/v3/order"], methods=["POST"])
    waiting = f"wait-{uuid.uuid4().hex[:8]}"
    manual(live, waiting, symbol="BTC-USDT", side="buy", notional=50)
    wait_for(lambda: sim.state()["faults"]["injected"]["throttle"] > injected, 30, "the order refused")
    halted_at = time.monotonic()
    halt(live)
    try:
        wait_for(lambda: sim.state()["openOrders"] == 0, 10, "the resting order cancelled")
        cancelled_after = time.monotonic() - halted_at
        assert done(live, waiting) is None, "cancelled only once the waiting order had ended"
        assert cancelled_after < 5, cancelled_after
        run = wait_for(lambda: done(live, waiting), 30, "the waiting order's end")
        assert run["outcome"] == "rejected" and run["reason"].startswith("halted"), run
        assert exchange_orders_with_id(sim, "BTC-USDT", order_id_for(waiting)) == 0
        wait_for(lambda: order_id_for(resting) not in open_orders(live), 10, "the resting order settled")
    finally:
        sim.admin("DELETE", "/sim/faults")
        unhalt(live)


def open_orders(s: System) -> list[str]:
    return list(httpx.get(s.url("trade-executor") + "/status", timeout=10).json()["exchange"]["openOrders"])


def unhalt(s: System) -> None:
    r = httpx.post(s.url() + "/admin/orchestrate/unhalt", json={"force": True}, headers=s.admin, timeout=10)
    assert r.status_code == 200, r.text


def halt(s: System) -> None:
    body = {"reason": "manual", "mode": "halt"}
    r = httpx.post(s.url() + "/admin/orchestrate/halt", json=body, headers=s.admin, timeout=10)
    assert r.status_code == 200, r.text


def test_an_order_id_the_exchange_has_already_is_that_order_not_a_second(live: System, sim: Sim) -> None:
    """The exchange already has an order under the client order id of a run (sent by an earlier
    life whose ledger rows were lost, e.g. a database restored from backup): the exchange refuses
    the new one as a duplicate, and the system takes the order it has: filled once, its trades
    recorded once, no drift left."""
    rid = f"dup-{uuid.uuid4().hex[:8]}"
    oid = order_id_for(rid)
    since = now_at(live)
    placed = at_exchange(
        sim,
        lambda ex: ex.create_order(
            ccxt_symbol("BTC-USDT"), "market", "buy", 0.003, None, {"newClientOrderId": client_order_id(oid)}
        ),
    )
    orders_before = sim.state()["orders"]
    manual(live, rid, symbol="BTC-USDT", side="buy", notional=100)
    run, halts = watch_halts(live, lambda: done(live, rid), 60, "the run")
    assert run["outcome"] == "filled", run
    assert halts == []
    assert sim.state()["orders"] == orders_before  # nothing new at the exchange
    assert exchange_orders_with_id(sim, "BTC-USDT", oid) == 1
    # the ledger has the exchange's order: its quantity, its trades once
    [(qty,)] = db_rows(live, "select qty from fills where order_id = ?", oid)
    assert D(qty) == D(str(placed["filled"])) == D("0.003")
    trades = db_rows(live, "select trade_id from exchange_fills where order_id = ?", oid)
    assert len(trades) == len({t for (t,) in trades}) >= 1
    # and the exchange agrees with the ledger again
    wait_for(lambda: reconciled_clean(live, since), 30, "a reconciliation without drift")


def test_an_order_id_taken_in_another_market_is_a_clear_rejection(live: System, sim: Sim) -> None:
    """The exchange has the run's client order id already, on an order of another market (which
    expired with nothing done): the exchange refuses the new order as a duplicate and no order of
    that id is found in the run's market, so the run is rejected `duplicate_client_order_id`;
    nothing new at the exchange, no halt."""
    rid = f"dupx-{uuid.uuid4().hex[:8]}"
    oid = order_id_for(rid)
    eth = D(sim.state()["prices"]["ETHUSDT"])
    far = float((eth * D("0.5")).quantize(D("0.01")))  # IOC far from the price: expires, nothing traded
    params = {"newClientOrderId": client_order_id(oid), "timeInForce": "IOC"}
    at_exchange(sim, lambda ex: ex.create_order(ccxt_symbol("ETH-USDT"), "limit", "buy", 0.2, far, params))
    orders_before = sim.state()["orders"]
    manual(live, rid, symbol="BTC-USDT", side="buy", notional=50)
    run, halts = watch_halts(live, lambda: done(live, rid), 60, "the run")
    assert run["outcome"] == "rejected" and run["reason"].startswith("duplicate_client_order_id"), run
    assert halts == []
    assert sim.state()["orders"] == orders_before
    assert exchange_orders_with_id(sim, "BTC-USDT", oid) == 0
    assert db_rows(live, "select * from fills where order_id = ?", oid) == []


def test_an_order_placed_by_hand_is_adopted_and_its_fill_reaches_the_ledger(live: System, sim: Sim) -> None:
    """EXCHANGE_UNKNOWN_ORDERS=adopt: a limit order placed at the exchange by hand is taken in by
    reconciliation, followed, and when it fills it gets its `fills` row; /pnl/status agrees with
    the PnL recomputed from the fills table. The running risk manager holds a reservation for it
    while it is open (announced on exec.status), not only from its next start."""
    cid = f"hand-{uuid.uuid4().hex[:10]}"
    held = reservations(live)
    price = D(sim.state()["prices"]["BTCUSDT"])
    limit = (price * D("0.97")).quantize(D("0.01"))
    at_exchange(
        sim,
        lambda ex: ex.create_order(
            ccxt_symbol("BTC-USDT"), "limit", "buy", 0.004, float(limit), {"newClientOrderId": cid}
        ),
    )
    wait_for(lambda: cid in httpx.get(live.url("trade-executor") + "/status").json()["exchange"]["openOrders"],
             30, "the order adopted")
    assert db_rows(live, "select request_id, status from orders where order_id = ?", cid) == [
        (f"adopted-{cid}", "pending")
    ]
    assert db_rows(live, "select * from fills where order_id = ?", cid) == []
    wait_for(lambda: reservations(live) == held + 1, 30, "the risk manager to reserve the adopted order")
    before = httpx.get(live.url() + "/pnl/status", timeout=10).json()
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(limit - 1)})  # crosses it: fills
    sim.admin("POST", "/sim/price", {"symbol": "BTCUSDT", "price": str(price)})
    rows = wait_for(lambda: db_rows(live, "select qty, price, fee, side from fills where order_id = ?", cid),
                    30, "the adopted order's fill row")
    [(qty, px, fee, side)] = rows
    assert (D(qty), D(px), side) == (D("0.004"), limit, "buy")
    assert D(fee) > 0  # charged in BTC, converted to USDT at the trade's price
    assert db_rows(live, "select status from orders where order_id = ?", cid) == [("filled",)]
    # /pnl/status (the orchestrator's ledger, from exec.status) = a recomputation from the fills
    wait_for(lambda: pnl_is_the_fills(live), 30, "/pnl/status to agree with the fills table")
    # and it moved by exactly this fill: cash paid out, the position grown
    after = httpx.get(live.url() + "/pnl/status", timeout=10).json()
    assert D(str(after["cash"])) == D(str(before["cash"])) - D(qty) * D(px) - D(fee)
    assert position(after, "BTC-USDT") == position(before, "BTC-USDT") + D("0.004")
    wait_for(lambda: reservations(live) == held, 30, "the filled order's reservation released")


def reservations(live: System) -> int:
    return int(httpx.get(live.url("risk-manager") + "/status", timeout=10).json()["reservations"])


def position(pnl: dict[str, Any], symbol: str) -> D:
    return sum((D(str(h["qty"])) for h in pnl["positions"] if h["symbol"] == symbol), D(0))


def test_a_key_the_exchange_refuses_is_a_clear_rejection_and_a_p1(
    live: System, sim: Sim, tmp_path: Path
) -> None:
    """The exchange stops accepting the key's signatures (the secret changed at the exchange):
    a manual order is rejected `exchange_auth_failed`, nothing reaches the exchange, the operator
    gets a P1 `exchange.auth_failed` notification without any secret in it; no halt. With the
    key accepted again, orders trade."""
    port, data = sim.port, sim.data_dir
    sim.stop()
    other = start_sim(data, "--depth", "300", "--api-secret", "rotated-secret", port=port)
    sim.proc = other.proc  # the module's simulator, now refusing our signatures
    try:
        orders_before = sim.state()["orders"]
        rid = f"auth-{uuid.uuid4().hex[:8]}"
        manual(live, rid, symbol="BTC-USDT", side="buy", notional=100)
        run, halts = watch_halts(live, lambda: done(live, rid), 60, "the run")
        assert run["outcome"] == "rejected" and run["reason"].startswith("exchange_auth_failed"), run
        assert halts == []
        assert sim.state()["orders"] == orders_before
        events = wait_for(
            lambda: [e for e in notified(live) if e["type"] == "exchange.auth_failed"], 30, "the notification"
        )
        assert events[0]["priority"] == "P1"
        text = json.dumps(events) + (live.data_dir / "logs" / "trade-executor.log").read_text() + live.output()
        assert SECRET not in text and "rotated-secret" not in text
    finally:
        sim.stop()
        sim.proc = start_sim(data, "--depth", "300", port=port).proc
    rid = f"auth-ok-{uuid.uuid4().hex[:8]}"
    manual(live, rid, symbol="BTC-USDT", side="buy", notional=100)
    assert wait_for(lambda: done(live, rid), 60, "the run")["outcome"] == "filled"


def notified(s: System) -> list[dict[str, Any]]:
    return list(httpx.get(s.url("notification-manager") + "/notify/recent", timeout=10).json()["events"])
