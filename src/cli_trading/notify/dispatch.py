"""One notify.events message, start to finish: classify, open/join/mitigate an incident,
throttle repeats, render the runbook's template, deliver to every routed channel, record each
delivery. A delivery that still fails after its retries raises, so the bus retries the message
and finally dead-letters it on notify.events.dlq; a retry (or a requeue) skips the channels
already reached, so nobody gets the same alert twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from cli_trading.bus import PoisonMessage
from cli_trading.contracts import NotifyEvent, iso
from cli_trading.db import notify_repo
from cli_trading.logs import SECRET_WORDS, get_logger
from cli_trading.notify import intake, render, throttle
from cli_trading.notify.channels import ChannelResult, Sender
from cli_trading.notify.classify import Classification, classify
from cli_trading.notify.config import NotifyConfig
from cli_trading.notify.incidents import Incidents
from cli_trading.notify.metrics import NOTIFICATIONS_SENT, NOTIFY_EVENTS

log = get_logger("notify")
RECENT_KEY = "cli-trading:notify:recent"
RECENT_MAX = 500


class DeliveryFailed(RuntimeError):
    """Some channel could not be reached; the message is retried, then dead-lettered."""


class Dispatcher:
    def __init__(
        self,
        *,
        cfg: NotifyConfig,
        sessions: Callable[[], Any],
        redis: Any,
        incidents: Incidents,
        sender: Sender,
        clock: Callable[[], datetime],
    ) -> None:
        self.cfg, self.sessions, self.redis, self.incidents = cfg, sessions, redis, incidents
        self.sender, self.clock = sender, clock

    async def handle(self, payload: dict[str, Any]) -> None:
        try:
            event = NotifyEvent.model_validate(payload).model_dump(mode="json")
        except ValidationError as exc:
            raise PoisonMessage(f"not a notify event: {exc.errors()[0]['msg']}") from exc
        if str(event["type"]).startswith("incident."):
            await self._lifecycle(event)
        else:
            await self._event(event)

    async def _event(self, event: dict[str, Any]) -> None:
        cls = classify(event, self.cfg.rules)
        observed = await intake.observe(self.incidents, event, cls)
        action = observed.action if observed else None
        send, held = True, 0
        if cls.throttle:  # a new incident is never a repeat, but it opens the window for its repeats
            key = f"{cls.priority}:{cls.cause}"
            send, held = await throttle.admit(
                self.redis, key=key, trace_id=event["traceId"], window_s=self.cfg.throttle_seconds
            )
            send = send or action == "opened"
        inc = await self._incident(observed.incident_id) if observed else None
        plan = render.for_event(self.cfg, event, cls, action=action, inc=inc, now=self.clock(), suppressed=held)
        if await self._first_time(event):
            NOTIFY_EVENTS.labels(cls.priority, cls.category).inc()
            await self._remember(event, cls, plan, action, throttled=not send)
        if not send:
            await self._record(
                event, plan, [ChannelResult(c, self.cfg.channels[c].label, "throttled", 0) for c in plan.channels]
            )
            return
        await self._deliver(event, plan)

    async def _lifecycle(self, event: dict[str, Any]) -> None:
        iid = (event.get("context") or {}).get("incidentId")
        inc = await self._incident(int(iid)) if iid else None
        if inc is None:
            raise PoisonMessage(f"{event['type']}: no incident {iid}")
        plan = render.for_lifecycle(self.cfg, event, inc, self.clock())
        if await self._first_time(event):
            await self._remember(event, None, plan, event["type"].split(".", 1)[1], throttled=False)
        await self._deliver(event, plan)

    async def _deliver(self, event: dict[str, Any], plan: render.Plan) -> None:
        async with self.sessions() as s:
            done = await notify_repo.delivered(s, trace_id=event["traceId"])
        todo = [c for c in plan.channels if c not in done]
        outcomes = list(await asyncio.gather(*(self.sender.send(c, plan.message, plan.priority) for c in todo)))
        await self._record(event, plan, outcomes)
        failed = [o for o in outcomes if o.failed]
        for o in outcomes:
            (log.warning if o.failed else log.info)(
                "notification",
                channel=o.channel,
                result=o.status,
                attempts=o.attempts,
                type=event["type"],
                priority=plan.priority,
                incidentId=plan.incident_id,
                error=o.error,
            )
        if failed:
            raise DeliveryFailed(", ".join(f"{o.channel}: {o.error}" for o in failed))

    async def _record(self, event: dict[str, Any], plan: render.Plan, outcomes: list[ChannelResult]) -> None:
        if not outcomes:
            return
        now = self.clock()
        rows = [
            {
                "ts": now,
                "trace_id": event["traceId"],
                "type": event["type"][:80],
                "severity": plan.priority,
                "category": plan.category,
                "channel": o.channel,
                "status": o.status,
                "attempts": o.attempts,
                "message": plan.message.body,
                "error": o.error,
                "incident_id": plan.incident_id,
            }
            for o in outcomes
        ]
        async with self.sessions() as s, s.begin():
            await notify_repo.add_notifications(s, rows=rows)
        for o in outcomes:
            NOTIFICATIONS_SENT.labels(o.channel, o.status).inc()

    async def _incident(self, incident_id: int) -> Any:
        async with self.sessions() as s:
            return await notify_repo.get_incident(s, incident_id=incident_id)

    async def _first_time(self, event: dict[str, Any]) -> bool:
        return bool(await self.redis.set(f"cli-trading:notify:seen:{event['traceId']}", 1, nx=True, ex=86_400))

    async def _remember(
        self,
        event: dict[str, Any],
        cls: Classification | None,
        plan: render.Plan,
        action: str | None,
        *,
        throttled: bool,
    ) -> None:
        entry = {
            "receivedAt": iso(self.clock()),
            "ts": event.get("ts"),
            "traceId": event["traceId"],
            "type": event["type"],
            "severity": event.get("severity"),
            "message": event.get("message"),
            "context": _safe(event.get("context") or {}),
            "priority": plan.priority,
            "category": plan.category,
            "rule": cls.rule if cls else "lifecycle",
            "incidentId": plan.incident_id,
            "incidentAction": action,
            "channels": plan.channels,
            "throttled": throttled,
            "title": plan.message.title,
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(RECENT_KEY, orjson.dumps(entry, default=str))
            pipe.ltrim(RECENT_KEY, 0, RECENT_MAX - 1)
            await pipe.execute()


def _safe(ctx: dict[str, Any]) -> dict[str, Any]:
    """A producer's context without secret-looking values (recent events are readable by anyone)."""
    return {k: "***" if any(w in k.lower() for w in SECRET_WORDS) else v for k, v in ctx.items()}


async def recent(redis: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in await redis.lrange(RECENT_KEY, 0, max(0, limit - 1))]
