"""`GET /admin/overview`: everything the operator's console shows, in one answer, so a console
refreshing every half second costs the system one request instead of a dozen.

The halt state, PnL and runs come from the orchestrator's memory on every call (a halt shows at
once); what costs more to gather — the other agents' health, Redis stream details, log tails,
incidents, the recovery checklist — is cached for a second or more and gathered once however
many consoles ask (one refresh in flight per source)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from cli_trading.contracts import AGENTS, Group, iso
from cli_trading.control import overview_sources as src
from cli_trading.control import streams
from cli_trading.db import repo
from cli_trading.notify.probe import base_url

if TYPE_CHECKING:
    from cli_trading.config import Settings
    from cli_trading.control.runs import RunBook
    from cli_trading.halt.state import HaltState

GROUP_AGENT = {
    Group.ANALYST: "market-analyst",
    Group.ORCHESTRATOR: "orchestrator",
    Group.RISK: "risk-manager",
    Group.EXEC: "trade-executor",
    Group.PORTFOLIO: "portfolio-manager",
    Group.NOTIFY: "notification-manager",
    Group.OPTIMIZER: "parameter-optimizer",
}
EQUITY_EVERY = 10.0  # seconds between two points of the intraday equity curve
EQUITY_POINTS = 8640  # a day of points at that pace
SPARK_POINTS = 120  # what the answer carries (the console draws at most this wide)
ACTIVITY = 60
REDIS_WAIT = 3.0  # seconds the stream details may take before Redis counts as unreachable


class Cached:
    """A value refreshed at most every `ttl` seconds, by one caller at a time; on failure the
    error is the value (the console shows it) until the next try. Only the first answer waits
    for it: later ones get the last value while a refresh runs in the background, so a slow or
    hung source (an agent that does not answer, the recovery checklist) never delays the halt
    state every answer carries."""

    def __init__(self, ttl: float, fetch: Callable[[], Awaitable[Any]]) -> None:
        self.ttl, self.fetch = ttl, fetch
        self.value: Any = None
        self.expires = 0.0
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def get(self) -> Any:
        if time.monotonic() < self.expires:
            return self.value
        if self.value is None:
            await self._refresh()
        elif self.task is None or self.task.done():
            self.task = asyncio.create_task(self._refresh())
        return self.value

    async def _refresh(self) -> None:
        async with self.lock:
            if time.monotonic() < self.expires:
                return
            try:
                self.value = await self.fetch()
            except Exception as exc:  # noqa: BLE001 - any failure of a source is shown, not raised
                self.value = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            self.expires = time.monotonic() + self.ttl


ME = "orchestrator"  # the agent that serves the overview: its own row comes from its memory


class Overview:
    """Takes what it reads: the settings, Redis, the database's sessions, the run book, and from
    the orchestrator's memory its PnL, halt state, health checks and process figures."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: Any,
        sessions: Callable[[], Any],
        runs: RunBook,
        clock: Callable[[], datetime],
        pnl: Callable[[], dict[str, Any]],
        halt_state: Callable[[], HaltState],
        health: Callable[[], Awaitable[dict[str, dict[str, Any]]]],
        process: Callable[[], dict[str, Any]],
    ) -> None:
        self.settings, self.sessions, self.runs, self.clock = settings, sessions, runs, clock
        self.pnl, self.halt_state, self.health, self.process = pnl, halt_state, health, process
        self.client: httpx.AsyncClient | None = None
        self.equity: deque[tuple[float, str, Decimal]] = deque(maxlen=EQUITY_POINTS)
        self.agents = Cached(1.0, self._agents)
        # a Redis that hangs (stopped, a network partition) must show as out, not as its last answer
        self.streams = Cached(1.0, lambda: asyncio.wait_for(streams.overview(redis), REDIS_WAIT))
        self.logs = Cached(1.0, lambda: asyncio.to_thread(src.read_logs, settings.logs_path))
        self.incidents = Cached(2.0, self._incidents)
        self.checklist = Cached(30.0, self._checklist)
        self.halts = Cached(2.0, self._halts)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self.client is None:  # our own agents, possibly behind the edge's self-signed certificate
            self.client = httpx.AsyncClient(timeout=2.0, verify=False)  # noqa: S501
        return self.client

    async def build(self, *, actor: str, logs: int = 100, log_agent: str | None = None,
                    log_level: str | None = None) -> dict[str, Any]:
        pnl = self.pnl()
        self._sample(pnl)
        agents, stream_rows, log_doc, incidents, checklist, halts = await asyncio.gather(
            self.agents.get(), self.streams.get(), self.logs.get(), self.incidents.get(), self.checklist.get(),
            self.halts.get(),
        )
        log_map = log_doc if isinstance(log_doc, dict) and "error" not in log_doc else {}
        return {
            "asOf": iso(self.clock()),
            "you": actor,
            "trading": {
                "mode": self.settings.trading_mode,
                "symbols": self.settings.symbol_list,
                **self.halt_state().to_api(),
            },
            "pnl": {**pnl, "equityCurve": self._curve(pnl["date"])},
            "agents": self._agent_rows(agents, stream_rows, log_map),
            "streams": stream_rows,
            "incidents": incidents,
            "checklist": checklist,
            "activity": self._activity(halts),
            "logs": src.merged_tail(log_map, limit=logs, agent=log_agent, level=log_level),
        }

    # -- PnL ------------------------------------------------------------------------------
    def _sample(self, pnl: dict[str, Any]) -> None:
        now = time.monotonic()
        if not self.equity or now - self.equity[-1][0] >= EQUITY_EVERY:
            self.equity.append((now, str(pnl["date"]), pnl["equity"]))

    def _curve(self, day: str) -> list[Decimal]:
        points = [e for _, d, e in self.equity if d == day]
        step = max(1, len(points) // SPARK_POINTS)
        return points[::-1][::step][::-1][-SPARK_POINTS:]

    # -- agents ---------------------------------------------------------------------------
    async def _agents(self) -> dict[str, Any]:
        others = [a for a in AGENTS if a != ME]
        found = await asyncio.gather(*(src.probe_agent(self._http(), base_url(self.settings, a)) for a in others))
        out = dict(zip(others, found, strict=True))
        checks = await self.health()
        failing = sorted(k for k, v in checks.items() if not v.get("ok", True))
        # `cli-trading up`'s view of every process (restarts, crash loops; supervision.py)
        out["_supervision"] = (checks.get("supervision") or {}).get("processes") or {}
        out[ME] = {
            "state": "unhealthy" if failing else "healthy",
            "failing": failing,
            **{k: v for k, v in self.process().items() if k in ("pid", "uptimeSeconds")},
        }
        return out

    def _agent_rows(self, agents: Any, stream_rows: Any, logs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        probed = agents if isinstance(agents, dict) and "error" not in agents else {}
        supervised = probed.get("_supervision") or {}
        load: dict[str, dict[str, int]] = {a: {"pending": 0, "lag": 0} for a in AGENTS}
        for row in stream_rows if isinstance(stream_rows, list) else []:
            for g in row["groups"]:
                if agent := GROUP_AGENT.get(g["name"]):
                    load[agent]["pending"] += int(g["pending"] or 0)
                    load[agent]["lag"] += int(g["lag"] or 0)
        return [
            {
                "agent": a,
                **probed.get(a, {"state": "unknown"}),
                "restarts": supervised.get(a, {}).get("restarts"),
                "supervisor": supervised.get(a, {}).get("state"),
                "crashLoop": bool(supervised.get(a, {}).get("crashLoop")),
                **load[a],
                "lastError": src.last_error(logs.get(a, [])),
            }
            for a in AGENTS
        ]

    # -- incidents (the notification manager's API) ---------------------------------------
    async def _incidents(self) -> dict[str, Any]:
        url = base_url(self.settings, "notification-manager")
        r = await self._http().get(url + "/incidents", params={"state": "open", "limit": 50})
        r.raise_for_status()
        return {"open": r.json()["incidents"]}

    async def _checklist(self) -> dict[str, Any]:
        url = base_url(self.settings, "notification-manager")
        r = await self._http().get(url + "/recovery/checklist", timeout=10)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    # -- activity: runs (fills, rejections, holds) and halts, newest first ---------------------
    async def _halts(self) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            rows = await repo.halt_events(s, limit=20)
        return [
            {
                "kind": e.action,
                "ts": e.ts.isoformat(),
                "id": f"halt-{e.id}",
                "summary": f"{e.action} {e.reason or ''} ({e.mode or '-'}) by {e.actor or '?'}",
                "record": {"reason": e.reason, "mode": e.mode, "actor": e.actor, "source": e.source,
                           "note": e.note, "detail": e.detail, "ts": e.ts.isoformat()},
            }
            for e in rows
        ]

    def _activity(self, halts: Any) -> list[dict[str, Any]]:
        book = self.runs
        recent = [*book.active.values()][-ACTIVITY:]
        for rid in reversed(book.finished):
            if len(recent) >= 2 * ACTIVITY:
                break
            recent.append(book.finished[rid])
        items = [run_item(r) for r in recent]
        items += halts if isinstance(halts, list) else []
        items.sort(key=lambda i: i["ts"], reverse=True)
        return items[:ACTIVITY]


def run_item(run: Any) -> dict[str, Any]:
    api = run.to_api()
    kind = {"filled": "fill", "rejected": "rejection"}.get(run.outcome or "", "run")
    what = f"{run.side or ''} {run.qty or ''} {run.symbol}".split()
    why = f": {run.reason}" if run.reason else ""
    return {
        "kind": kind,
        "ts": api["finishedAt"] or api["createdAt"],
        "id": run.request_id,
        "summary": f"{api['state']} {' '.join(what)}{why}",
        "record": {**api, "steps": list(run.steps)},
    }
