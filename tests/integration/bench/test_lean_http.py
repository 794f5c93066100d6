"""The pipeline driver's lean HTTP client (bench/lean_http.py) against a real HTTP server (uvicorn,
as the agents run) over real sockets: a status is returned once the whole answer has arrived,
a connection serves request after request (keep-alive), a server that closes its connection
makes a new one, and a refused connection is an error for the caller."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location("lean_http", Path(__file__).parents[3] / "bench" / "lean_http.py")
assert _spec is not None and _spec.loader is not None
lean_http = importlib.util.module_from_spec(_spec)
sys.modules["lean_http"] = lean_http
_spec.loader.exec_module(lean_http)

BIG = b"x" * 200_000  # an answer that arrives in many reads


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """202 with the request's body length; /big answers a long body; /close closes after."""
    assert scope["type"] == "http"
    body, more = b"", True
    while more:
        msg = await receive()
        body, more = body + msg.get("body", b""), msg.get("more_body", False)
    path = scope["path"]
    answer = BIG if path == "/big" else str(len(body)).encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 201 if path == "/big" else 202, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def server(free_port: int) -> AsyncIterator[str]:
    srv = _Server(uvicorn.Config(app, host="127.0.0.1", port=free_port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(srv.serve())
    await srv.listening.wait()
    yield f"http://127.0.0.1:{free_port}"
    srv.should_exit = True
    await task


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.listening.set()


async def test_one_connection_serves_request_after_request(server: str) -> None:
    client = lean_http.LeanClient(4)
    for _ in range(5):
        assert await client.post(f"{server}/run", b'{"a": 1}', {"X-Request-Id": "r"}) == 202
    assert len(client.all) == 1, "keep-alive: the same connection each time"
    assert await client.post(f"{server}/big", b"", {}) == 201  # the whole long answer read
    assert await client.post(f"{server}/run", b"{}", {}) == 202  # and the connection still in step
    assert len(client.all) == 1
    await client.close()


async def test_at_most_its_connections_at_once(server: str) -> None:
    client = lean_http.LeanClient(3)
    codes = await asyncio.gather(*[client.post(f"{server}/run", b"{}", {}) for _ in range(30)])
    assert set(codes) == {202}
    assert 1 <= len(client.all) <= 3
    await client.close()


async def test_a_closed_connection_is_replaced(server: str) -> None:
    client = lean_http.LeanClient(2)
    assert await client.post(f"{server}/close", b"{}", {}) == 202
    assert client.all == [], "the server said it closes: not kept"
    assert await client.post(f"{server}/run", b"{}", {}) == 202
    assert len(client.all) == 1
    await client.close()


async def test_a_refused_connection_is_the_callers_error(free_port: int) -> None:
    client = lean_http.LeanClient(2)
    with pytest.raises(OSError):
        await client.post(f"http://127.0.0.1:{free_port}/run", b"{}", {})
    await client.close()
