"""notification-manager (7006): consumes notify.events (several instances share the group),
classifies, opens incidents, delivers the runbook's templates through apprise; escalation and
status-update reminders on the agent's clock; agent-down watchdog; the recovery checklist.
The work lives in `cli_trading.notify`; this module wires it and serves the routes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi import Path as ApiPath
from fastapi.responses import JSONResponse, PlainTextResponse

from cli_trading.agents.base import Agent, StartupError, Subscription
from cli_trading.agents.wiring import Services
from cli_trading.auth import TokenStore
from cli_trading.bus import Delivery, per_message
from cli_trading.config import ConfigError
from cli_trading.contracts import AGENTS, Group, NotifyEvent, Stream
from cli_trading.db import notify_repo
from cli_trading.notify import alertmanager, oncall, postmortem, probe, recovery
from cli_trading.notify import config as notify_config
from cli_trading.notify.channels import Sender
from cli_trading.notify.config import NotifyConfig
from cli_trading.notify.dispatch import Dispatcher, recent
from cli_trading.notify.incidents import IncidentError, Incidents
from cli_trading.notify.schemas import AckBody, IncidentAck, OpenBody, ResolveBody, UpdateBody
from cli_trading.notify.watchdog import Watchdog, probe_once
from cli_trading.web import ApiError, bearer, guarded, json_body

NOTIFY_DISABLED = "POST /notify disabled: set ADMIN_TOKEN or NOTIFY_TOKEN(_FILE)"
AM_DISABLED = "Alertmanager webhook disabled: set ALERTMANAGER_TOKEN(_FILE) and its http_config.authorization"
INT_MAX = 2**31 - 1  # incident ids are 32-bit integers in the database: larger ones are a 422, not a crash
IncidentId = Annotated[int, ApiPath(ge=1, le=INT_MAX)]
IncidentFilter = Annotated[int | None, Query(ge=1, le=INT_MAX)]


def _actor(request: Request, by: str | None) -> str:
    token = getattr(request.state, "actor", None)
    return f"{by} ({token})" if by and token else by or token or "anonymous"


class Markdown(PlainTextResponse):
    """A Markdown document (the postmortem), declared as such in the OpenAPI document."""

    media_type = "text/markdown"


@dataclass(frozen=True)
class NotifierParts:
    cfg: NotifyConfig  # the notification policy (notify.yaml)
    incidents: Incidents
    dispatcher: Dispatcher  # classifies each event, opens incidents, delivers through the channels
    watchdog: Watchdog  # the agent-down probe's counts


def wire_notifier(svc: Services) -> NotifierParts:
    """The notifier's parts from its policy file (a broken one stops the start, naming the file and
    the key), the database, Redis and the clock."""
    try:
        cfg = notify_config.load(svc.settings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from exc
    incidents = Incidents(
        cfg=cfg,
        sessions=svc.sessions,
        redis=svc.redis,
        publish=functools.partial(svc.publish, Stream.NOTIFY),
        clock=svc.clock,
        audit=svc.audit,
    )
    dispatcher = Dispatcher(
        cfg=cfg, sessions=svc.sessions, redis=svc.redis, incidents=incidents, sender=Sender(cfg), clock=svc.clock
    )
    return NotifierParts(cfg, incidents, dispatcher, Watchdog(failures_needed=cfg.watchdog.failures))


class NotificationManager(Agent[NotifierParts]):
    name = "notification-manager"

    async def wire(self, services: Services) -> NotifierParts:
        return wire_notifier(services)

    async def publish(self, event: NotifyEvent) -> str:
        return await self.streams.publish(Stream.NOTIFY, event)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Stream.NOTIFY, Group.NOTIFY, per_message(self.on_event), key="traceId", batch=20
            )
        ]

    async def on_event(self, d: Delivery) -> None:
        await self.parts.dispatcher.handle(d.payload)

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        out: list[Callable[[], Awaitable[None]]] = [self._incident_loop]
        if self.parts.cfg.watchdog.enabled:
            out.append(self._watchdog_loop)
        return out

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]], what: str) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), seconds)
            if self.stop_event.is_set():
                return
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - a database or Redis outage: try again next tick
                self.log.warning(f"{what} failed", error=str(exc)[:200])

    async def _incident_loop(self) -> None:
        await self._every(self.parts.cfg.loop_seconds, lambda: oncall.run_due(self.parts.incidents), "escalation check")

    async def _watchdog_loop(self) -> None:
        urls = {a: probe.base_url(self.settings, a) for a in AGENTS if a != self.name}
        await self._every(
            self.parts.cfg.watchdog.interval_seconds,
            lambda: probe_once(self.parts.watchdog, urls=urls, redis=self.redis, publish=self.publish),
            "watchdog",
        )

    async def status(self) -> dict[str, Any]:
        return {
            "policy": str(notify_config.config_path(self.settings)),
            "channels": {
                n: {"label": c.label, "configured": self.parts.dispatcher.sender.configured(n)}
                for n, c in self.parts.cfg.channels.items()
            },
        }

    async def checklist(self, *, documented: bool) -> dict[str, Any]:
        facts = await probe.gather(
            settings=self.settings,
            engine=self.engine,
            redis=self.redis,
            now=self.clock(),
            documented=documented,
            open_incidents=await self.parts.incidents.listing(state="open", limit=200),
            token_configured=self.guard.tokens.configured(),
        )
        return recovery.evaluate(facts)

    async def postmortem(self, incident_id: int) -> str:
        inc = await self.parts.incidents.get(incident_id)
        async with self.session() as s:
            rows = await notify_repo.notifications(s, incident_id=incident_id, limit=1000)
        return postmortem.generate(
            inc, now=self.clock(), deliveries=[{"channel": r.channel, "status": r.status} for r in rows]
        )

    def add_routes(self, app: FastAPI) -> None:
        _notify_routes(self, app)
        _incident_routes(self, app)


def _guarded(fn: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await fn(*args, **kwargs)
        except IncidentError as exc:
            raise ApiError(exc.status, str(exc)) from exc

    return call


def _notify_routes(nm: NotificationManager, app: FastAPI) -> None:
    @app.get("/notify/recent", tags=["notify"])
    async def recent_events(limit: int = 50) -> dict[str, Any]:
        return {"events": await recent(nm.redis, limit=min(max(limit, 1), 500))}

    # Anyone who reaches 7006 could page the on-call with a forged P0: both need a credential.
    # /notify: the admin token or NOTIFY_TOKEN (X-Admin-Token, X-Notify-Token or Bearer);
    # /notify/alertmanager: ALERTMANAGER_TOKEN as a Bearer token (or the admin token).
    admin = nm.guard.tokens
    notify_tokens = TokenStore(token=nm.settings.notify_token or None, token_file=nm.settings.notify_token_file)
    am_tokens = TokenStore(token=nm.settings.alertmanager_token or None, token_file=nm.settings.alertmanager_token_file)

    @app.post("/notify", status_code=202, tags=["notify"], response_model=None)
    async def post(request: Request) -> dict[str, Any] | JSONResponse:
        presented = request.headers.get("x-notify-token") or bearer(request)
        creds = [(request.headers.get("x-admin-token"), admin), (presented, notify_tokens)]
        refusal = await guarded(nm, request, creds, allow_list=False, disabled=NOTIFY_DISABLED)
        if refusal is not None:
            return refusal
        ev = await json_body(request, NotifyEvent)
        return {"id": await nm.publish(ev), "traceId": ev.traceId}

    @app.post("/notify/alertmanager", status_code=202, tags=["notify"], response_model=None)
    async def from_alertmanager(request: Request) -> dict[str, Any] | JSONResponse:
        creds = [(bearer(request), am_tokens), (request.headers.get("x-admin-token"), admin)]
        refusal = await guarded(nm, request, creds, allow_list=False, disabled=AM_DISABLED)
        if refusal is not None:
            return refusal
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "malformed JSON body") from exc
        found = alertmanager.events(payload if isinstance(payload, dict) else {})
        for ev in found:
            await nm.publish(ev)
        return {"published": len(found), "traceIds": [e.traceId for e in found]}

    @app.get("/notify/deliveries", tags=["notify"])
    async def deliveries(
        limit: int = 50, incidentId: IncidentFilter = None, traceId: str | None = None
    ) -> dict[str, Any]:
        async with nm.session() as s:
            rows = await notify_repo.notifications(
                s, limit=min(max(limit, 1), 1000), incident_id=incidentId, trace_id=traceId
            )
        return {
            "deliveries": [
                {
                    "id": r.id,
                    "ts": r.ts.isoformat(),
                    "traceId": r.trace_id,
                    "type": r.type,
                    "severity": r.severity,
                    "category": r.category,
                    "channel": r.channel,
                    "status": r.status,
                    "attempts": r.attempts,
                    "error": r.error,
                    "incidentId": r.incident_id,
                    "message": r.message,
                }
                for r in rows
            ]
        }

    @app.post("/admin/notify/ack", tags=["notify"])
    async def ack(request: Request) -> dict[str, Any]:
        body = await json_body(request, AckBody)
        who, incidents = _actor(request, body.by), nm.parts.incidents
        if body.incidentId is not None:
            return await _guarded(incidents.ack)(body.incidentId, actor=who, commander=body.commander or body.by)
        return await _guarded(incidents.ack_trace)(str(body.traceId), actor=who)

    @app.get("/recovery/checklist", tags=["incidents"])
    async def checklist(documented: bool = False) -> dict[str, Any]:
        return await nm.checklist(documented=documented)


def _incident_routes(nm: NotificationManager, app: FastAPI) -> None:
    @app.get("/incidents", tags=["incidents"])
    async def listing(state: str = "all", limit: int = 50) -> dict[str, Any]:
        if state not in ("all", "open", "resolved"):
            raise ApiError(422, "state must be all, open or resolved")
        found = await nm.parts.incidents.listing(state=None if state == "all" else state, limit=min(max(limit, 1), 500))
        return {"incidents": found}

    @app.get("/incidents/{incident_id}", tags=["incidents"])
    async def show(incident_id: IncidentId) -> dict[str, Any]:
        return await _guarded(nm.parts.incidents.get)(incident_id)

    @app.get("/incidents/{incident_id}/postmortem", tags=["incidents"], response_class=Markdown)
    async def pm(incident_id: IncidentId) -> PlainTextResponse:
        try:
            text = await nm.postmortem(incident_id)
        except IncidentError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        return Markdown(text)

    @app.post("/admin/incidents", status_code=201, tags=["incidents"])
    async def open_(request: Request) -> dict[str, Any]:
        b = await json_body(request, OpenBody)
        return await _guarded(nm.parts.incidents.open)(
            title=b.title,
            severity=b.severity,
            category=b.category,
            impact=b.impact,
            commander=b.commander,
            services=b.services,
            actor=_actor(request, b.by),
        )

    @app.post("/admin/incidents/{incident_id}/ack", tags=["incidents"])
    async def ack(incident_id: IncidentId, request: Request) -> dict[str, Any]:
        b = await json_body(request, IncidentAck)
        who = _actor(request, b.by)
        return await _guarded(nm.parts.incidents.ack)(incident_id, actor=who, commander=b.commander or b.by)

    @app.post("/admin/incidents/{incident_id}/update", tags=["incidents"])
    async def update(incident_id: IncidentId, request: Request) -> dict[str, Any]:
        b = await json_body(request, UpdateBody)
        return await _guarded(nm.parts.incidents.update)(
            incident_id,
            actor=_actor(request, b.by),
            progress=b.progress,
            next_steps=b.nextSteps,
            status=b.status,
            eta=b.eta,
            impact=b.impact,
            commander=b.commander,
        )

    @app.post("/admin/incidents/{incident_id}/resolve", tags=["incidents"])
    async def resolve(incident_id: IncidentId, request: Request) -> dict[str, Any]:
        b = await json_body(request, ResolveBody)
        return await _guarded(nm.parts.incidents.resolve)(
            incident_id, actor=_actor(request, b.by), root_cause=b.rootCause, resolution=b.resolution
        )
