"""Agent-down detection: the notification manager probes the other agents' /health; an agent
failing N probes in a row raises `agent.down` (P1 by the default rules), its recovery
`agent.recovered` (which mitigates that incident). A Redis key makes each transition fire once
across every notification-manager instance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from cli_trading.contracts import NotifyEvent

KEY = "cli-trading:notify:agent-down:"


class Watchdog:
    def __init__(self, *, failures_needed: int) -> None:
        self.failures_needed = failures_needed
        self.failures: dict[str, int] = {}

    def observe(self, agent: str, ok: bool) -> str | None:
        """'down' once the failures reach the threshold, 'up' on the first success after."""
        before = self.failures.get(agent, 0)
        self.failures[agent] = 0 if ok else before + 1
        if not ok and self.failures[agent] == self.failures_needed:
            return "down"
        if ok and before >= self.failures_needed:
            return "up"
        return None


async def probe_once(
    dog: Watchdog, *, urls: dict[str, str], redis: Any, publish: Callable[[NotifyEvent], Awaitable[Any]]
) -> None:
    async with httpx.AsyncClient(timeout=3, verify=False) as client:  # noqa: S501 - loopback agents
        for agent, url in urls.items():
            try:
                code = (await client.get(url + "/health")).status_code
            except httpx.HTTPError as exc:
                code, why = 0, type(exc).__name__
            else:
                why = f"/health answered {code}"
            change = dog.observe(agent, code == 200)
            if change == "down" and await redis.set(KEY + agent, 1, nx=True):
                await publish(
                    NotifyEvent(
                        type="agent.down",
                        severity="critical",
                        message=f"{agent} is down ({why}, {dog.failures_needed} probes in a row)",
                        context={"agent": agent, "category": "infrastructure", "url": url},
                    )
                )
            elif change == "up" and await redis.delete(KEY + agent):
                await publish(
                    NotifyEvent(
                        type="agent.recovered",
                        severity="info",
                        message=f"{agent} is back",
                        context={"agent": agent, "category": "infrastructure"},
                    )
                )
