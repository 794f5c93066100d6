"""PostgreSQL lost while `cli-trading up` runs, then back.

Runs against a private PostgreSQL cluster made for the test in a temporary folder (never the
machine's shared server on 5432), so that the database can be stopped under a running system:

- the database-backed agents report the outage on /health (503, database check false), and none
  of them exits while the server is down;
- a 202 means the run is committed (docs/architecture.md, "Runs"), so while the database is down
  a new run is refused (503, a JSON error) and nothing of it is started or written, then or later;
- a run accepted before the outage, whose order is on its way to the executor when the database
  goes, is not lost: the executor keeps the order while it cannot claim it, and once the
  database is back every agent is healthy again, the run reaches its outcome, and the ledger
  holds its fill exactly once;
- an outage longer than DB_OUTAGE_HALT_S with such an order in flight halts trading
  (system_error), and that halt, decided while nothing could be written, is in the database once
  it is back;
- an agent meeting a database that answers with an error (starting up, shutting down, not
  accepting connections) waits for it instead of exiting (the bus keeps the batch, `faults.py`);
- the notification of the outage halt waits for the database instead of being dead-lettered.

The order in flight is made deterministic by pausing the trade-executor (SIGSTOP) before the
order is placed: its exec.orders message waits in Redis while the database is stopped, and the
executor, resumed (SIGCONT), meets the outage with the order in hand.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import redis

from cli_trading.contracts import AGENT_PORTS, Stream, dlq_of, order_id_for
from tests.e2e.conftest import System, start_system
from tests.support import ports

pytestmark = pytest.mark.e2e

DB_NAME = "trading"
# the agents that open the database (the analyst and the optimizer run without one)
DB_AGENTS = ("orchestrator", "portfolio-manager", "risk-manager", "trade-executor", "notification-manager")
TERMINAL = ("filled", "rejected", "failed")
# Automatic trading is kept away from the executor: the analyst's signals are all rejected by risk
# (a confidence of 1 is required, and at confidence 1 the sizing asks for ~2% of equity, over the
# order cap), while the tests' manual 50 USD buys pass (manual orders bypass the confidence
# rule). The executor then touches the database only for orders the test places, so the instant
# the database stops never falls inside an executor write by chance: what happens when it does
# is pinned down, deterministically, by test_executor_survives_a_database_that_refuses_it.
QUIET_RISK = """\
risk:
  min_confidence: 1.0
  manual_bypasses_confidence: true
  max_order_notional: 100
  blocked_sides: [sell]
"""

T = TypeVar("T")


# -- the private PostgreSQL cluster ---------------------------------------------------------


def _pg_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps them out of PATH)."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        return None
    newest = max(found, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return newest.parent


def _tcp_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class PgCluster:
    bindir: Path
    root: Path  # owned by the server's OS user: holds the data folder, the socket and the log
    port: int
    owner: pwd.struct_passwd | None  # run the server as this user (PostgreSQL refuses root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner.pw_name, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def _check(self, *args: str, timeout: float = 60) -> str:
        res = self._run(*args, timeout=timeout)
        assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}\n{self.server_log()}"
        return res.stdout

    def init(self) -> None:
        # trust authentication is safe here: the server listens on loopback only (see start)
        self._check(
            str(self.bindir / "initdb"), "-D", str(self.data), "--username=postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        # fsync off: a throwaway cluster, and the test measures recovery, not the disk
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._check(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts,
            "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._check(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status").returncode == 0

    def sql(self, query: str, db: str = DB_NAME) -> list[list[str]]:
        """Rows of a query through psql over TCP: the test needs no database driver of its own."""
        out = self._check(
            str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
            "-v", "ON_ERROR_STOP=1", "-AtF", "\t", "-c", query,
        )  # fmt: skip
        return [line.split("\t") for line in out.splitlines() if line]

    def lock_out(self) -> None:
        """The server stays up but refuses the trading database, with an error of its own (as
        while it starts up, recovers or shuts down), and drops the sessions open on it."""
        self.sql(f"ALTER DATABASE {DB_NAME} ALLOW_CONNECTIONS false", db="postgres")
        self.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB_NAME}'", db="postgres")

    def let_in(self) -> None:
        self.sql(f"ALTER DATABASE {DB_NAME} ALLOW_CONNECTIONS true", db="postgres")

    def server_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-3000:]
        return ""


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    """A private cluster with an empty `trading` database, stopped and removed afterwards."""
    bindir = _pg_bindir()
    if bindir is None:
        # the suite needs a PostgreSQL server (README), whose package ships these: never skip
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): install the server package")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' OS user to run the server as")
    # not under pytest's tmp_path: that lies in a 0700 folder of root, which the server's user
    # cannot enter. A short path also keeps the Unix socket's path under its length limit.
    root = Path(tempfile.mkdtemp(prefix="cli-trading-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = ports.free_port()  # reserved for the session: the server stops and starts on it
    cluster = PgCluster(bindir, root, port, owner)
    try:
        cluster.init()
        cluster.start()
        cluster.sql(f"CREATE DATABASE {DB_NAME}", db="postgres")
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                try:
                    cluster.stop("fast")
                except AssertionError:
                    cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------


def until(fn: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll `fn` until it returns something truthy, or fail after `timeout` naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout}s: {what} (last: {value!r})")
        time.sleep(every)


def start(tmp: Path, pg: PgCluster, *, redis_url: str, halt_after_s: float) -> System:
    """On a port block of its own and an empty Redis database of its own (tests/conftest.py)."""
    config = tmp / "config"
    config.mkdir()
    (config / "risk.yaml").write_text(QUIET_RISK)
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": pg.url,
        "DB_OUTAGE_HALT_S": str(halt_after_s),
        "CONFIG_DIR": str(config),
    }
    return start_system(tmp, extra_env=env)


def health(s: System, agent: str) -> tuple[int, dict[str, Any]]:
    try:
        r = httpx.get(s.url(agent) + "/health", timeout=5)
        return r.status_code, r.json()
    except (httpx.HTTPError, ValueError):
        return 0, {}  # not answering at all: the agent is down


def db_down_reported(s: System, agent: str) -> bool:
    code, body = health(s, agent)
    return code == 503 and body.get("checks", {}).get("database", {}).get("ok") is False


def order_request(s: System, rid: str, notional: int = 50) -> httpx.Response:
    """A manual buy of `notional` USD, its requestId given (X-Request-Id)."""
    return httpx.post(
        s.url() + "/orchestrate/run",
        json={"symbol": "BTC-USD", "side": "buy", "notional": notional},
        timeout=10,
        headers={**s.admin, "X-Request-Id": rid},
    )


def place_order(s: System, notional: int = 50) -> str:
    """A manual buy, accepted (202); right after the start the market may have no price yet
    (409): retry that."""
    rid = f"e2e-{uuid.uuid4().hex[:12]}"

    def attempt() -> str | None:
        r = order_request(s, rid, notional)
        if r.status_code == 409 and "no market price" in r.text:
            return None
        assert r.status_code == 202, r.text
        assert r.json()["requestId"] == rid, r.text
        return rid

    return until(attempt, 30, "a market price for BTC-USD", every=0.5)


def refused_order(s: System) -> str:
    """A manual buy while the database is down: refused with a JSON error naming the database
    (a 202 would promise a run the database does not hold). Returns its requestId."""
    rid = f"e2e-refused-{uuid.uuid4().hex[:12]}"
    r = order_request(s, rid)
    assert r.status_code == 503, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"].startswith("run not accepted: the database is unavailable"), body
    assert "requestId" not in body, body  # no run was made for it
    return rid


def agent_pid(s: System, agent: str) -> int:
    return int(httpx.get(s.url(agent) + "/status", timeout=5).json()["pid"])


@contextlib.contextmanager
def paused(s: System, agent: str) -> Iterator[Callable[[], None]]:
    """The agent stopped (SIGSTOP): alive for the supervisor, reading nothing. Yields `resume`
    (SIGCONT); resumed on the way out in any case, so that a failing test still stops cleanly."""
    pid = agent_pid(s, agent)

    def resume() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGSTOP)
    try:
        yield resume
    finally:
        resume()


def order_queued(r: redis.Redis, order_id: str) -> bool:
    """The order's message is on exec.orders (not consumed: the executor is paused)."""
    entries = r.xrange(Stream.ORDERS)
    return any(orjson.loads(fields[b"data"]).get("orderId") == order_id for _, fields in entries)


def runs_rows(pg: PgCluster, rid: str) -> list[list[str]]:
    return pg.sql(f"SELECT coalesce(outcome, ''), coalesce(order_id, '') FROM runs WHERE request_id = '{rid}'")


def order_in_flight(s: System, pg: PgCluster, r: redis.Redis) -> str:
    """With the executor paused and the database up: a run accepted, hence already committed,
    whose order waits on exec.orders. Returns its requestId."""
    rid = place_order(s)
    assert len(runs_rows(pg, rid)) == 1, "answered 202 but the run is not in the database"
    until(lambda: order_queued(r, order_id_for(rid)), 15, f"the order of run {rid} on exec.orders")
    assert not run_of(s, rid).get("outcome"), run_of(s, rid)
    return rid


def executor_holds_order(s: System) -> bool:
    """The executor is up, reports the database down, and its exec.orders consumer is stalled on
    a batch it could not handle: the order in flight, which it keeps rather than fail."""
    code, body = health(s, "trade-executor")
    checks = body.get("checks", {})
    stalled = checks.get("consumers", {}).get("stalled", {})
    return code == 503 and checks.get("database", {}).get("ok") is False and "exec.orders/exec" in stalled


def notify_types(r: redis.Redis) -> list[str]:
    return [orjson.loads(fields[b"data"]).get("type", "") for _, fields in r.xrange(Stream.NOTIFY)]


def assert_left_nothing(s: System, pg: PgCluster, rid: str) -> None:
    """A run refused during the outage, once the database is back: never recorded, never ordered."""
    assert httpx.get(f"{s.url()}/orchestrate/run/{rid}", timeout=5).status_code == 404
    assert runs_rows(pg, rid) == []
    assert order_rows(pg, order_id_for(rid)) == []
    assert fills_of(pg, order_id_for(rid)) == 0


def run_of(s: System, rid: str) -> dict[str, Any]:
    try:
        r = httpx.get(f"{s.url()}/orchestrate/run/{rid}", timeout=5)
    except httpx.HTTPError:
        return {}
    return r.json() if r.status_code == 200 else {}


def wait_outcome(s: System, rid: str, timeout: float) -> dict[str, Any]:
    try:
        until(lambda: run_of(s, rid).get("outcome"), timeout, f"an outcome for run {rid}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{run_of(s, rid)}\n{logs(s)}") from None
    return run_of(s, rid)


def pnl(s: System) -> dict[str, Any]:
    return httpx.get(s.url() + "/pnl/status", timeout=5).json()


def restarts(s: System) -> list[str]:
    """The supervisor's lines about agents that exited (it restarts them): a crash, never a
    way to handle an outage."""
    return [line for line in s.output().splitlines() if " exited with " in line or "keeps crashing" in line]


def logs(s: System, lines: int = 30) -> str:
    """The tail of `up`'s output and of every agent's log: what to read when an assertion fails."""
    out = [f"== up.out ==\n{s.output()[-3000:]}"]
    for f in sorted((s.data_dir / "logs").glob("*")):
        if f.is_file() and f.suffix in (".log", ".out"):
            tail = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {f.name} ==\n" + "\n".join(tail))
    return "\n".join(out)


def fills_of(pg: PgCluster, order_id: str) -> int:
    return int(pg.sql(f"SELECT count(*) FROM fills WHERE order_id = '{order_id}'")[0][0])


def order_rows(pg: PgCluster, order_id: str) -> list[str]:
    return [r[0] for r in pg.sql(f"SELECT status FROM orders WHERE order_id = '{order_id}'")]


def all_healthy_again(s: System, timeout: float) -> None:
    try:
        until(
            lambda: all(health(s, a)[0] == 200 for a in AGENT_PORTS),
            timeout,
            "every agent healthy again after the database returned",
            every=0.5,
        )
    except AssertionError as exc:
        states = {a: health(s, a)[0] for a in AGENT_PORTS}
        raise AssertionError(f"{exc}\n{states}\n{logs(s)}") from None


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "halt_after_s",
    [
        # the outage ends long before DB_OUTAGE_HALT_S: the order in flight must be filled
        pytest.param(600, id="short-outage-order-filled"),
        # the outage outlasts DB_OUTAGE_HALT_S with an order in flight: trading halts. Long enough
        # for the refused run to be placed before the halt (it would be refused as halted after).
        pytest.param(5, id="long-outage-halts"),
    ],
)
def test_database_stopped_while_running_then_back(
    tmp_path: Path, pg: PgCluster, halt_after_s: float, redis_url: str
) -> None:
    halts = halt_after_s < 60
    s = start(tmp_path, pg, redis_url=redis_url, halt_after_s=halt_after_s)
    r = redis.Redis.from_url(redis_url)
    try:
        # 1. a normal fill with the database up
        run1 = wait_outcome(s, place_order(s), 30)
        assert run1["outcome"] == "filled", run1
        order1 = run1["orderId"]

        with paused(s, "trade-executor") as resume:
            # 2. a run accepted with the database up, its order on the way to the executor
            second = order_in_flight(s, pg, r)
            # 3. the database goes away; fast: the open sessions are terminated, as in a real outage
            pg.stop("fast")
            # 4. a new run cannot be committed, so it is not accepted (first: before any halt)
            refused = refused_order(s)
            for agent in DB_AGENTS:
                if agent != "trade-executor":
                    until(
                        lambda a=agent: db_down_reported(s, a), 15, f"{agent} /health 503 with the database check false"
                    )
            # 5. the executor meets the outage with the order in hand: it keeps it, unclaimed
            resume()
        until(lambda: executor_holds_order(s), 15, "the executor holding the order while the database is down")
        if halts:
            # ... and, in flight while the database stays unreachable, it halts trading
            until(lambda: pnl(s)["halted"], halt_after_s + 15, "a halt while the database is down")
            state = pnl(s)
            assert state["haltReason"] == "system_error", state
            assert "database unreachable" in (state["haltNote"] or ""), state
        assert run_of(s, second)["state"] == "ordered", run_of(s, second)  # no outcome while nothing is written
        assert not restarts(s), f"an agent crashed during the outage:\n{logs(s)}"

        # 6. the database comes back: every agent recovers by itself
        pg.start()
        all_healthy_again(s, 60)

        # 7. the run accepted before the outage reaches its outcome, once
        run2 = wait_outcome(s, second, 60)
        outcome, order2 = run2["outcome"], run2["orderId"]
        if halts:
            # the halt reached the executor's gate before the order could be recorded there
            assert (outcome, run2["reason"]) == ("rejected", "halted"), run2
        else:
            assert outcome == "filled", run2
        assert order2 == order_id_for(second), run2

        # 8. the ledger: each fill exactly once, and the order and run rows agree with the outcomes
        assert fills_of(pg, order1) == 1
        assert order_rows(pg, order1) == ["filled"]
        assert fills_of(pg, order2) == (1 if outcome == "filled" else 0)
        assert order_rows(pg, order2) == [outcome], run2
        until(lambda: runs_rows(pg, second) == [[outcome, order2]], 15, f"run {second} recorded {outcome}")
        # the refused run left nothing behind, then or since
        assert_left_nothing(s, pg, refused)
        if halts:
            # the halt decided while nothing could be written was saved once the database returned
            saved = until(
                lambda: pg.sql("SELECT reason FROM halt_state WHERE halted"), 15, "the halt saved in the database"
            )
            assert saved == [["system_error"]], saved
            assert pnl(s)["haltReason"] == "system_error"  # still halted: an operator must look
        assert not restarts(s), f"an agent crashed:\n{logs(s)}"
        assert s.proc.poll() is None, f"cli-trading up exited:\n{logs(s)}"
    finally:
        s.stop()


def test_executor_survives_a_database_that_refuses_it(tmp_path: Path, pg: PgCluster, redis_url: str) -> None:
    """The same outage, but the server answers with an error instead of refusing the TCP
    connection: what clients meet while PostgreSQL starts up, recovers or shuts down, which is
    where `pg_ctl stop` lands an executor that is writing at that instant. Made deterministic by
    locking the database out while the server stays up, with an order in flight."""
    s = start(tmp_path, pg, redis_url=redis_url, halt_after_s=600)
    r = redis.Redis.from_url(redis_url)
    try:
        run1 = wait_outcome(s, place_order(s), 30)
        assert run1["outcome"] == "filled", run1

        with paused(s, "trade-executor") as resume:
            second = order_in_flight(s, pg, r)
            pg.lock_out()
            until(lambda: db_down_reported(s, "orchestrator"), 15, "orchestrator /health 503 with the database down")
            refused = refused_order(s)  # an error from the server refuses a run as well
            resume()

        # The executor now fails to claim the order at every try. It must stay up, reporting the
        # database on /health, rather than exit: a restart cannot succeed while the database is
        # away. Watched for a bounded while, ending early on a crash.
        until(lambda: executor_holds_order(s), 15, "the executor holding the order while the database refuses it")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert executor_holds_order(s), (
                f"trade-executor stopped reporting the outage, /health {health(s, 'trade-executor')}:\n{logs(s)}"
            )
            time.sleep(0.25)
        assert not run_of(s, second)["outcome"], run_of(s, second)
        assert not restarts(s), f"an agent crashed during the outage:\n{logs(s)}"

        pg.let_in()
        all_healthy_again(s, 60)
        run2 = wait_outcome(s, second, 60)
        assert run2["outcome"] == "filled", run2
        assert fills_of(pg, run2["orderId"]) == 1
        assert order_rows(pg, run2["orderId"]) == ["filled"]
        assert_left_nothing(s, pg, refused)
        assert not restarts(s), f"an agent crashed:\n{logs(s)}"
    finally:
        with contextlib.suppress(Exception):
            pg.let_in()
        s.stop()


def test_outage_halt_is_notified_once_the_database_is_back(tmp_path: Path, pg: PgCluster, redis_url: str) -> None:
    s = start(tmp_path, pg, redis_url=redis_url, halt_after_s=3)
    dlq = dlq_of(Stream.NOTIFY)
    r = redis.Redis.from_url(redis_url)

    def halt_notifications() -> list[dict[str, Any]]:
        try:
            got = httpx.get(s.url("notification-manager") + "/notify/recent", timeout=5).json()["events"]
        except (httpx.HTTPError, ValueError, KeyError):
            return []
        return [e for e in got if e.get("type") == "halt.system_error"]

    try:
        # an order in flight while the database is away: the outage halt's condition
        with paused(s, "trade-executor") as resume:
            rid = order_in_flight(s, pg, r)
            pg.stop("fast")
            resume()
        until(lambda: pnl(s)["halted"], 20, "a halt while the database is down")
        assert pnl(s)["haltReason"] == "system_error", pnl(s)
        assert not run_of(s, rid)["outcome"], run_of(s, rid)  # still in flight: what the halt is for
        # the halt's notification went out with the halt, to a notifier that cannot handle it yet
        until(lambda: "halt.system_error" in notify_types(r), 10, "the halt's notification on notify.events")
        # The notification must wait for the database, not be given up on: watch the notifier for a
        # bounded while longer than the bus's retries take to exhaust, ending early on a dead letter.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not r.xlen(dlq):
            time.sleep(0.25)
        assert r.xlen(dlq) == 0, r.xrange(dlq)
        assert not halt_notifications()  # not handled while the database is down
        pg.start()
        all_healthy_again(s, 60)
        until(halt_notifications, 30, "the halt.system_error notification handled once the database is back")
        assert r.xlen(dlq) == 0, r.xrange(dlq)
        # and the order in flight was stopped at the executor's gate, never filled
        run = wait_outcome(s, rid, 60)
        assert (run["outcome"], run["reason"]) == ("rejected", "halted"), run
        assert fills_of(pg, order_id_for(rid)) == 0
    finally:
        s.stop()
