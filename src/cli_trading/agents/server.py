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
import contextvars
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

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
    are small and never streamed.)

    The crossings go in batches (`_Mailbox`): the requests the server thread reads while the
    agent's loop is busy are started by one call on that loop, and the answers it finishes in one
    turn go back in one call; under load that is a fraction of a wake-up per request, where a
    future per request and per direction (`run_coroutine_threadsafe`, `wrap_future`) cost two
    wake-ups and their callbacks each."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.loop = app, loop
        self._inbox: _Mailbox[_Crossing] = _Mailbox(self._start)
        self._outboxes: dict[asyncio.AbstractEventLoop, _Mailbox[_Crossing]] = {}  # one per server loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await _read_body(receive) if scope["type"] == "http" else b""
        here = asyncio.get_running_loop()
        outbox = self._outboxes.get(here) or self._outboxes.setdefault(here, _Mailbox(_answer))
        crossing = _Crossing(scope, body, here.create_future(), outbox)
        self._inbox.put(self.loop, crossing)
        try:
            await crossing.answered
        except asyncio.CancelledError:
            # the server gave up on the request (its shutdown): so does the agent's loop
            self.loop.call_soon_threadsafe(crossing.cancel)
            raise
        finally:
            for message in crossing.messages:
                await send(message)

    def _start(self, crossings: list[_Crossing]) -> None:
        """On the agent's loop: a task per request, in the context the server thread gave it (the
        request id its logs carry)."""
        for c in crossings:
            if not c.cancelled:
                c.task = self.loop.create_task(c.serve(self.app), context=c.context)


class _Crossing:
    """One request on its way to the agent's loop and back: `receive` and `send` there, the
    answer (`answered`, a future of the server thread's loop) set back here."""

    __slots__ = ("scope", "body", "answered", "outbox", "context", "messages", "error", "task", "cancelled", "_read")

    def __init__(
        self, scope: dict[str, Any], body: bytes, answered: asyncio.Future[None], outbox: _Mailbox[_Crossing]
    ) -> None:
        self.scope, self.body, self.answered, self.outbox = scope, body, answered, outbox
        self.context = contextvars.copy_context()
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = self._read = False

    async def serve(self, app: ASGIApp) -> None:
        """On the agent's loop; the answer (or what the app raised) goes back to the server's."""
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # noqa: BLE001 - raised again on the server thread
            self.error = exc
        with contextlib.suppress(RuntimeError):  # the server's loop is closed: nobody waits for it
            self.outbox.put(self.answered.get_loop(), self)

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await asyncio.Event().wait()  # nothing more comes: a client that left is the server's
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def cancel(self) -> None:
        """On the agent's loop: the server gave up on this request."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


def _answer(crossings: list[_Crossing]) -> None:
    """On the server thread's loop: each request's answer, or what its app raised."""
    for c in crossings:
        if c.answered.done():  # the server gave up on it
            continue
        if isinstance(c.error, asyncio.CancelledError):
            c.answered.cancel()
        elif c.error is not None:
            c.answered.set_exception(c.error)
        else:
            c.answered.set_result(None)


T = TypeVar("T")


class _Mailbox(Generic[T]):
    """Items one thread hands to another thread's event loop, in batches: the first item put into
    an empty box schedules one call (`call_soon_threadsafe`) that takes every item in the box by
    the time it runs. One thread puts, the loop's thread takes."""

    def __init__(self, take: Callable[[list[T]], None]) -> None:
        self._take = take
        self._items: list[T] = []
        self._lock = threading.Lock()

    def put(self, loop: asyncio.AbstractEventLoop, item: T) -> None:
        with self._lock:
            self._items.append(item)
            if len(self._items) > 1:
                return  # a call is already scheduled: it takes this one too
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nothing will take it
            with self._lock:
                self._items.clear()
            raise

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        self._take(items)


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
