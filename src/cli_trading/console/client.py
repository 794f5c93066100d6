"""The console's only way to the system: the agents' HTTP APIs (the same the CLI and the
runbook's curl use). URL, token and TLS come from the CLI's settings (`cli.client.target`);
`CLI_TRADING_URL` points the console at one base URL instead — the edge, which serves behind TLS
the orchestrator's routes (overview, halt, unhalt, streams) and the notification manager's
incident routes (acknowledge, mitigate, resolve): everything the console calls."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from cli_trading.auth import fingerprint
from cli_trading.cli.client import Target


class ConsoleError(Exception):
    """Anything that kept a request from succeeding; the message says what."""


class Unreachable(ConsoleError):
    """The agent did not answer (down, or the network between)."""


class Unauthorized(ConsoleError):
    """401: the token is missing or wrong (or 429: locked out after too many wrong ones)."""


class RateLimited(ConsoleError):
    """429 from the edge's rate limit (nginx), not from the agent: passing, try again later."""


class Refused(ConsoleError):
    """The API answered with an error: status and the JSON body that names the problem."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status, self.body = status, body


# The agents whose routes the console calls are published on the edge (deploy/nginx/nginx.conf):
# the orchestrator's, and the notification manager's incident routes (the only ones it calls there).
THROUGH_THE_EDGE = frozenset({"orchestrator", "notification-manager"})


@dataclass
class Endpoint:
    target: Target
    base_url: str | None = None  # CLI_TRADING_URL (the edge): every call of the console goes there

    def url(self, agent: str) -> str:
        if agent in THROUGH_THE_EDGE and self.base_url:
            return self.base_url.rstrip("/")
        return self.target.url(agent)

    @property
    def operator(self) -> str:
        """What the audit trail records for this console's actions."""
        return fingerprint(self.target.token) if self.target.token else "anonymous"


class ConsoleClient:
    def __init__(self, endpoint: Endpoint, *, timeout: float = 3.0) -> None:
        self.endpoint = endpoint
        headers = {"X-Admin-Token": endpoint.target.token} if endpoint.target.token else {}
        ca = os.environ.get("CLI_TRADING_CA")
        verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=ca) if ca else True
        self.http = httpx.AsyncClient(headers=headers, timeout=timeout, verify=verify)

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        agent: str = "orchestrator",
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        url = self.endpoint.url(agent) + path
        try:
            r = await self.http.request(method, url, json=body, params=params, timeout=wait or self.http.timeout)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{agent} does not answer at {self.endpoint.url(agent)} ({type(exc).__name__})") from exc
        try:
            data = r.json()
        except ValueError:
            data = {"error": r.text[:300]}
        if not isinstance(data, dict):
            data = {"data": data}
        if r.status_code == 429 and "retryAfter" not in data:
            # nginx's page, not the agent's lockout (a JSON body with retryAfter): the edge's
            # per-address budget is used up for now; the token is fine
            raise RateLimited(f"429: the edge's rate limit for {path}; try again in a second")
        if r.status_code in (401, 429):
            raise Unauthorized(str(data.get("error", r.status_code)))
        if r.status_code >= 400:
            raise Refused(r.status_code, data)
        return data

    # -- what the console reads ---------------------------------------------------------------
    async def overview(self, *, logs: int = 60) -> dict[str, Any]:
        return await self.request("GET", "/admin/overview", params={"logs": logs})

    async def dlq(self, stream: str, *, count: int = 100) -> dict[str, Any]:
        return await self.request("GET", "/admin/streams/dlq", params={"stream": stream, "count": count})

    async def run(self, request_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/orchestrate/run/{request_id}")

    async def audit(self, *, limit: int = 300) -> dict[str, Any]:
        return await self.request("GET", "/admin/audit", params={"limit": limit})

    # -- what it does (the runbook's actions) --------------------------------------------------
    async def halt(self, *, reason: str, mode: str, note: str | None) -> dict[str, Any]:
        body = {"reason": reason, "mode": mode, "note": note}
        return await self.request("POST", "/admin/orchestrate/halt", body=body)

    async def unhalt(self, *, force: bool = False, note: str | None = None) -> dict[str, Any]:
        return await self.request("POST", "/admin/orchestrate/unhalt", body={"force": force, "note": note})

    async def requeue(self, dlq_stream: str, *, entry_id: str | None = None, all_: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"dlqStream": dlq_stream, "all": all_}
        if entry_id:
            body["id"] = entry_id
        return await self.request("POST", "/admin/streams/dlq/requeue", body=body)

    async def incident(self, incident_id: int, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """ack, update (mitigate) or resolve, on the notification manager."""
        return await self.request(
            "POST", f"/admin/incidents/{incident_id}/{action}", agent="notification-manager", body=body
        )
