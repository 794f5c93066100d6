"""notification-manager (7006): consumes notify.events, keeps the recent ones readable.
Routing, templates and incidents live in `cli_trading.notify`."""

from __future__ import annotations

from collections import deque
from typing import Any

from fastapi import FastAPI, Request

from cli_trading.agents.base import Agent, Subscription
from cli_trading.bus import Delivery, Outcome
from cli_trading.contracts import Group, NotifyEvent, Stream
from cli_trading.web import json_body


class NotificationManager(Agent):
    name = "notification-manager"

    async def on_start(self) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(Stream.NOTIFY, Group.NOTIFY, self.on_events, key=lambda p: p.get("traceId"), batch=50)]

    async def on_events(self, batch: list[Delivery]) -> list[Outcome]:
        for d in batch:
            self.recent.appendleft({"id": d.id, **d.payload})
        return [None] * len(batch)

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/notify/recent", tags=["notify"])
        async def recent(limit: int = 50) -> dict[str, Any]:
            return {"events": list(self.recent)[:limit]}

        @app.post("/notify", status_code=202, tags=["notify"])
        async def post(request: Request) -> dict[str, Any]:
            ev = await json_body(request, NotifyEvent)
            eid = await self.bus.publish(Stream.NOTIFY, ev)  # type: ignore[union-attr]
            return {"id": eid, "traceId": ev.traceId}
