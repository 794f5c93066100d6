"""An agent's HTTP server (agents/server.py) over a real socket: requests read on the server thread
cross to the agent's event loop in batches and come back each with its own answer, in the
context the server thread gave it (the request id its logs carry); what the app raises is a 500
and the server goes on."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cli_trading.agents import server as server_mod
from cli_trading.agents.server import OnLoop, agent_server
from tests.support import ports

pytestmark = pytest.mark.integration

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class Tagged:
    """On the server thread, as web.Observe binds the request id for the logs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        REQUEST_ID.set(headers.get(b"x-request-id", b"").decode())
        await self.app(scope, receive, send)


class Agent:
    """The app on the agent's loop: echoes the body and the request id it sees there."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.entered = 0
        self.all_in = asyncio.Event()
        self.expected = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.threads.add(threading.get_ident())
        body = (await receive())["body"]
        self.entered += 1
        if self.entered == self.expected:
            self.all_in.set()
        await self.gate.wait()
        if body == b"boom":
            raise RuntimeError("the app failed")
        out = b"%s|%s" % (body, REQUEST_ID.get().encode())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(out))]})
        await send({"type": "http.response.body", "body": out})


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Agent]]:
    agent = Agent()
    port = ports.reserve(1)
    http = agent_server(
        Tagged(OnLoop(agent, asyncio.get_running_loop())),
        host="127.0.0.1",
        port=port,
        cert=None,
        key=None,
        on_exit=lambda: None,
    )
    assert await asyncio.to_thread(http.start)
    try:
        yield f"http://127.0.0.1:{port}", agent
    finally:
        await asyncio.to_thread(http.stop)


async def test_each_request_gets_its_own_answer_and_context(
    served: tuple[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, agent = served
    drains = 0
    real = server_mod._Mailbox._drain  # noqa: SLF001 - counting the batches

    def counted(box: Any) -> None:
        nonlocal drains
        drains += 1
        real(box)

    agent.gate.clear()  # the agent's loop holds every request until all have crossed
    agent.expected = 64
    monkeypatch.setattr(server_mod._Mailbox, "_drain", counted)  # noqa: SLF001
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=64)) as c:
        calls = [
            asyncio.create_task(c.post("/x", content=b"body-%d" % i, headers={"x-request-id": f"rid-{i}"}))
            for i in range(64)
        ]
        await asyncio.wait_for(agent.all_in.wait(), 10)
        there = drains
        agent.gate.set()  # 64 answers finished in one turn of the agent's loop
        answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * 64
    assert [a.text for a in answers] == [f"body-{i}|rid-{i}" for i in range(64)]
    assert agent.threads == {threading.get_ident()}  # every request ran on the agent's loop
    assert there <= 64
    assert drains - there < 16  # the answers went back in a few batches, not one call each


async def test_an_app_that_raises_is_a_500_and_the_server_goes_on(served: tuple[str, Agent]) -> None:
    url, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        failed = await c.post("/x", content=b"boom")
        ok = await c.post("/x", content=b"fine", headers={"x-request-id": "after"})
    assert failed.status_code == 500
    assert (ok.status_code, ok.text) == (200, "fine|after")
