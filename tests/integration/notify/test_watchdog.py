"""The agent-down watchdog: N failed /health probes in a row raise agent.down once (across
instances, through Redis); the first success after raises agent.recovered."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cli_trading.contracts import NotifyEvent
from cli_trading.notify.watchdog import Watchdog, probe_once
from tests.support.receivers import free_port


def test_transitions() -> None:
    dog = Watchdog(failures_needed=3)
    assert [dog.observe("risk", ok) for ok in (True, False, False, False, False, True, True)] == [
        None,
        None,
        None,
        "down",
        None,
        "up",
        None,
    ]
    assert [dog.observe("exec", ok) for ok in (False, False, True, False)] == [None, None, None, None]


@pytest.mark.integration
async def test_probe_publishes_down_once_across_instances(redis_client: Any) -> None:
    events: list[NotifyEvent] = []

    async def publish(ev: NotifyEvent) -> None:
        events.append(ev)

    port = free_port()
    urls = {"risk-manager": f"http://127.0.0.1:{port}"}  # nothing listens there yet
    one, two = Watchdog(failures_needed=2), Watchdog(failures_needed=2)
    for _ in range(3):
        await probe_once(one, urls=urls, redis=redis_client, publish=publish)
        await probe_once(two, urls=urls, redis=redis_client, publish=publish)
    assert [(e.type, e.context["agent"]) for e in events] == [("agent.down", "risk-manager")]
    assert "ConnectError" in events[0].message

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Healthy)  # the agent comes back
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        await probe_once(one, urls=urls, redis=redis_client, publish=publish)
        await probe_once(two, urls=urls, redis=redis_client, publish=publish)
    finally:
        server.shutdown()
        server.server_close()
    assert [e.type for e in events] == ["agent.down", "agent.recovered"]
