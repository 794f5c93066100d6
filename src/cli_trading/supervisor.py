"""`cli-trading up`: the single-machine run. Takes the data folder's lock (one `up` per folder),
starts an embedded Redis (unless REDIS_URL is set), migrates the database, runs the seven agents
as supervised processes (`supervised.py`: restarted with backoff, Redis too, never abandoned),
shows their state and a line per fill and rejection, and stops everything on Ctrl-C or SIGTERM
within seconds. Its children end with it however it ends (parent-death signal)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from cli_trading.config import Settings, redact_url
from cli_trading.contracts import AGENTS
from cli_trading.embedded_redis import EmbeddedRedis, UpError
from cli_trading.files import write_atomic
from cli_trading.supervised import Supervisor
from cli_trading.ticker import Ticker
from cli_trading.uplock import LockHeld, UpLock, reap_leftovers

console = Console(stderr=False, highlight=False)
RUNTIME_FILE = "runtime.json"


def prepare_env(settings: Settings, *, redis_url: str, token_file: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()}
    env.update(
        {
            "DATA_DIR": str(settings.data_dir.resolve()),
            "REDIS_URL": redis_url,
            "DATABASE_URL": settings.db_url,
            "SPEED": str(settings.speed),
            "SYMBOLS": settings.symbols,
            "PORT_BASE": str(settings.port_base),
            "BIND_HOST": settings.bind_host,
            "TRADING_MODE": settings.trading_mode,  # `up --live` decides, not a stray variable
            "MARKET_FEED": settings.market_feed,
        }
    )
    if settings.replay_step:
        env["REPLAY_STEP"] = "1"
    if settings.config_dir:
        env["CONFIG_DIR"] = str(settings.config_dir.resolve())
    if settings.market_data_dir:
        env["MARKET_DATA_DIR"] = str(settings.market_data_dir.resolve())
    if token_file:
        env["ADMIN_TOKEN_FILE"] = str(token_file.resolve())
        env.pop("ADMIN_TOKEN", None)
    return env


def ensure_token(settings: Settings) -> Path | None:
    """With no ADMIN_TOKEN(_FILE), generate one into the data folder (mode 0600)."""
    if settings.admin_token or settings.admin_token_file:
        return None
    path = settings.data_dir / "secrets" / "admin_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path


def write_runtime(settings: Settings, info: dict[str, Any]) -> None:
    # whole or not at all: `status`, the CLI and takeovers read it while `up` rewrites it
    write_atomic(settings.data_dir / RUNTIME_FILE, json.dumps(info, indent=2).encode())


def read_runtime(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return {}


def agents_table(health: dict[str, str], settings: Settings) -> Table:
    t = Table(title="agents", show_edge=False)
    t.add_column("agent")
    t.add_column("url")
    t.add_column("state")
    for name, state in health.items():
        color = "green" if state == "healthy" else "yellow" if state.startswith("starting") else "red"
        t.add_row(name, f"http://{settings.bind_host}:{settings.port_of(name)}", f"[{color}]{state}[/{color}]")
    return t


def describe(settings: Settings, redis_url: str, token_file: Path | None) -> None:
    console.print(
        f"[bold]cli-trading[/bold] {settings.trading_mode} trading on {', '.join(settings.symbol_list)} "
        f"at {settings.speed} bars/s"
    )
    console.print(f"  data      {settings.data_dir.resolve()}")
    console.print(f"  logs      {settings.logs_path.resolve()}")
    console.print(f"  database  {redact_url(settings.db_url)}")
    console.print(f"  redis     {redact_url(redis_url)}")
    if token_file:
        console.print(f"  admin token file  {token_file.resolve()}  (export ADMIN_TOKEN=$(cat {token_file}))")


def check_ports(settings: Settings) -> None:
    for name in AGENTS:
        port = settings.port_of(name)
        with socket.socket() as s:
            wildcard = settings.bind_host == "0.0.0.0"  # noqa: S104 - a comparison, binds nothing
            if s.connect_ex((settings.bind_host if not wildcard else "127.0.0.1", port)) == 0:
                raise UpError(
                    f"port {port} ({name}) is already in use: is cli-trading already running? "
                    "Stop it, or choose other ports with --port-base"
                )


def migrate_once(settings: Settings) -> None:
    import asyncio

    from cli_trading.db.engine import make_engine, migrate

    async def go() -> None:
        engine = make_engine(settings.db_url)
        try:
            await migrate(engine, settings.db_url)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    except Exception as exc:  # noqa: BLE001
        raise UpError(f"database not usable at {redact_url(settings.db_url)}: {str(exc)[:300]}") from exc


def run_up(settings: Settings, *, extras: list[Any] | None = None) -> int:
    """Start everything, supervise until Ctrl-C/SIGTERM, stop everything. `extras` are objects
    with start()/stop() (Prometheus, nginx) started after the agents."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.logs_path.mkdir(parents=True, exist_ok=True)
    lock = UpLock(settings.data_dir)
    try:
        lock.acquire()
    except LockHeld as exc:
        raise UpError(str(exc)) from None
    try:
        _take_over(settings)
        check_ports(settings)
        return _run_locked(settings, extras)
    finally:
        lock.release()


def _take_over(settings: Settings) -> None:
    """A previous `up` on this folder died (its lock is free): wait for what it started to end."""
    prev = read_runtime(settings.data_dir)
    pids = [int(p) for p in [*(prev.get("agents") or {}).values(), prev.get("redisPid")] if p]
    if waited := reap_leftovers(pids):
        console.print(f"[yellow]a previous cli-trading up (pid {prev.get('pid')}) died; "
                      f"its {len(waited)} leftover processes have ended[/yellow]")


def _run_locked(settings: Settings, extras: list[Any] | None) -> int:
    embedded = None
    redis_url = settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        redis_url = embedded.start()
    elif not _redis_ok(redis_url):
        raise UpError(
            f"Redis is not reachable at {redact_url(redis_url)}: start it or unset REDIS_URL to use the embedded one"
        )
    sup: Supervisor | None = None
    started: list[Any] = []
    stop = {"now": False}

    def on_signal(*_: Any) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        migrate_once(settings)
        token_file = ensure_token(settings)
        describe(settings, redis_url, token_file)
        sup = Supervisor(
            settings, prepare_env(settings, redis_url=redis_url, token_file=token_file), embedded=embedded
        )
        sup.start_all()
        runtime = {
            "pid": os.getpid(),
            "redisUrl": redis_url,
            "redisPid": embedded.pid if embedded else None,
            "databaseUrl": redact_url(settings.db_url),
            "portBase": settings.port_base,
            "bindHost": settings.bind_host,
            "adminTokenFile": str(token_file.resolve()) if token_file else settings.admin_token_file,
        }
        _write_pids(settings, runtime, sup)
        _wait_healthy(sup, stop)
        for extra in extras or []:
            extra.start()
            started.append(extra)
        _supervise(settings, sup, runtime, redis_url, stop)
        console.print("stopping…")
        return 0
    finally:
        for extra in reversed(started):
            extra.stop()
        if sup:
            sup.stop_all()
        if embedded:
            embedded.stop()
        for s, h in old.items():
            signal.signal(s, h)
        console.print("stopped")


def _supervise(
    settings: Settings, sup: Supervisor, runtime: dict[str, Any], redis_url: str, stop: dict[str, bool]
) -> None:
    ticker = Ticker(redis_url)
    last_health = time.monotonic()
    pids = _pids(sup)
    while not stop["now"]:
        for line in ticker.poll(500) + sup.check():
            console.print(line)
        if _pids(sup) != pids:  # a restart: runtime.json names the processes a takeover waits for
            pids = _pids(sup)
            _write_pids(settings, runtime, sup)
        if time.monotonic() - last_health > 10:
            last_health = time.monotonic()
            bad = {n: s for n, s in sup.health().items() if s != "healthy"}
            for n, s in bad.items():
                console.print(f"[red]{n}: {s}[/red]")


def _pids(sup: Supervisor) -> dict[str, int | None]:
    out = {n: c.pid for n, c in sup.children.items()}
    out["redis"] = sup.embedded.pid if sup.embedded else None
    return out


def _write_pids(settings: Settings, runtime: dict[str, Any], sup: Supervisor) -> None:
    runtime["agents"] = {n: c.pid for n, c in sup.children.items() if c.pid}
    runtime["redisPid"] = sup.embedded.pid if sup.embedded else None
    write_runtime(settings, runtime)


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _wait_healthy(sup: Supervisor, stop: dict[str, bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not stop["now"] and time.monotonic() < deadline:
        for line in sup.check():
            console.print(line)
        health = sup.health()
        if all(s == "healthy" for s in health.values()):
            console.print(agents_table(health, sup.settings))
            mode = sup.settings.trading_mode
            console.print(f"[green]all agents healthy[/green] — {mode} trading; Ctrl-C stops everything")
            return
        time.sleep(0.5)
    if not stop["now"]:
        console.print(agents_table(sup.health(), sup.settings))
        console.print("[yellow]not every agent is healthy yet; still supervising[/yellow]")
