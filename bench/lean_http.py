"""The load generator's lean HTTP/1.1 client: keep-alive connections (asyncio protocols), each
request written as one buffer, each answer parsed by httptools (llhttp, the parser uvicorn runs
in the agents), its status returned when the whole answer has arrived. What aiohttp does per
request beyond that (its request and response objects, header multidicts, tracing hooks, a
timer per request) costs the load generator more CPU than the runs it drives take in some
agents (docs/benchmarks.md). Used by bench/pipeline_driver.py (`--client lean`, the default)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[int] | None = None
        self.keep_alive = False  # the last answer's: may the connection serve another request

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_message_complete(self) -> None:  # httptools: the whole answer (headers and body) is in
        answer, self.answer = self.answer, None
        self.keep_alive = self.parser.should_keep_alive()  # read here: the parser moves on after
        if answer is not None and not answer.done():
            answer.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer


class LeanClient:
    """POSTs to one server (the first URL's) over at most `connections` keep-alive connections."""

    def __init__(self, connections: int, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.slots = asyncio.Semaphore(connections)  # requests at once: never more connections
        self.idle: list[_Connection] = []
        self.all: list[_Connection] = []
        self.origin: tuple[str, str, int] | None = None  # scheme, host, port
        self._heads: dict[str, bytes] = {}  # URL -> its request line and Host header

    def _head(self, url: str) -> bytes:
        head = self._heads.get(url)
        if head is None:
            u = urlsplit(url)
            origin = (u.scheme, u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80))
            if self.origin not in (None, origin):
                raise ValueError(f"{url}: one client posts to one server ({self.origin})")
            self.origin = origin
            head = self._heads[url] = f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\n".encode()
        return head

    async def _connect(self) -> _Connection:
        assert self.origin is not None
        scheme, host, port = self.origin
        ctx: ssl.SSLContext | None = None
        if scheme == "https":  # the agents' own self-signed certificate (bench/halt_figures.sh)
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        _, conn = await asyncio.get_running_loop().create_connection(_Connection, host, port, ssl=ctx)
        self.all.append(conn)
        return conn

    async def _idle_or_new(self) -> _Connection:
        """A kept connection the server has not closed meanwhile (its keep-alive timeout), or a new one."""
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None:
                return conn
            self.all.remove(conn)
        return await self._connect()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The answer's status code, once the whole answer has arrived."""
        lines = [self._head(url), *(f"{k}: {v}\r\n".encode() for k, v in headers.items())]
        request = b"".join([*lines, b"Content-Length: %d\r\n\r\n" % len(body), body])
        async with self.slots:
            conn = await self._idle_or_new()
            ok = False
            try:
                async with asyncio.timeout(self.timeout_s):
                    status = await conn.send(request)
                ok = conn.transport is not None and conn.keep_alive
                return status
            finally:
                if ok:
                    self.idle.append(conn)
                else:  # broken, timed out or closing: the next request opens a new one
                    self.all.remove(conn)
                    if conn.transport is not None:
                        conn.transport.close()

    async def close(self) -> None:
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()
        self.all, self.idle = [], []
