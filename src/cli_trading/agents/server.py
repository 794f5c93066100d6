"""Each agent's HTTP server: uvicorn on a thread of its own, with an event loop of its own.

The server thread reads requests (TLS, proxy headers, keep-alive, slow clients: uvicorn's), times
them, checks admin tokens and audits (`web.Observe`), then hands each request to the agent's event
loop, where the routes run and every piece of the agent's state lives (`OnLoop`). A route the
agent marks as its server's own (`web.SERVER_ROUTES`: the orchestrator's halt) is answered on the
server thread itself, so it never waits behind the work the agent's loop is busy with — under
load that loop serves dozens of runs per turn — nor for a loop that is stuck.

Every deployment takes this one path: SQLite or PostgreSQL, plain HTTP or TLS, direct or through
the nginx edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import uvicorn

from cli_trading.logs import get_logger

log = get_logger("http")

ASGIApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]
# The server thread needs the interpreter lock after each wait; by default a thread that wants it
# waits up to 5 ms for the one holding it (the busy agent loop) to let go. A halt takes several
# such steps: ask the holder to let go after 0.5 ms instead.
SWITCH_INTERVAL_S = 0.0005


class OnLoop:
    """ASGI: run `app` on the agent's event loop for a request the server thread has read. The
    body is read here first and the response is collected there and sent from here, so a request
    crosses between the threads twice: there, and back with its answer. (Responses of the agents
    are small and never streamed.)"""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.loop = app, loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await _read_body(receive) if scope["type"] == "http" else b""
        messages: list[dict[str, Any]] = []
        delivered = False

        async def receive_there() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nothing more comes: a client that left is the server's
            raise AssertionError("unreachable")

        async def send_there(message: dict[str, Any]) -> None:
            messages.append(message)

        done = asyncio.run_coroutine_threadsafe(self.app(scope, receive_there, send_there), self.loop)
        try:
            await asyncio.wrap_future(done)
        finally:
            for message in messages:
                await send(message)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the agent owns signal handling (and this is not the main thread)


class HttpServer:
    """`start` binds the port and serves from the server thread; `stop` ends it (graceful, 2 s).
    `on_exit` is called (from the server thread) if the server ends on its own."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        self.config, self.on_exit = config, on_exit
        self.server = _Uvicorn(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)
        self._sock: socket.socket | None = None

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def start(self, timeout_s: float = 10.0) -> bool:
        """Bind (SystemExit when the port is taken: uvicorn logs why), then serve; True once
        the server listens."""
        self._sock = self.config.bind_socket()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()
        self.server.listening.wait(timeout_s)
        return self.started

    def _run(self) -> None:
        self.loop = _new_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except Exception as exc:  # noqa: BLE001 - reported, then the agent stops
            log.error("http server failed", error=repr(exc)[:300])
        finally:
            self.server.listening.set()
            self.loop.close()
            if not self.server.should_exit:
                self.on_exit()

    async def _serve(self) -> None:
        await self.server.serve(sockets=[self._sock] if self._sock is not None else None)

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._sock is not None:
            self._sock.close()


def agent_server(
    app: Any,
    *,
    host: str,
    port: int,
    cert: str | None,
    key: str | None,
    on_exit: Callable[[], None],
) -> HttpServer:
    """An agent's server on `host:port` (TLS when `cert` and `key` are given): httptools, no
    access log of uvicorn's (admin requests have their own, agents/audit.py), no lifespan (the
    agent's lifecycle is agents/base.py's), no event loop of uvicorn's choosing (`HttpServer`
    makes its own), at most 2 s to finish requests in flight on stop."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        loop="none",
        http="httptools",
        ssl_certfile=cert,
        ssl_keyfile=key,
        timeout_graceful_shutdown=2,
    )
    return HttpServer(config, on_exit=on_exit)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
