"""The halt door: POST /admin/orchestrate/halt answered off the orchestrator's event loop.

Under load the loop serves dozens of run requests per iteration and a halt waits its turn to be
read; if the loop were stuck (a bug, a long call), the halt would not be read at all. So a thread
waits on the orchestrator's listening socket next to the loop and, while the loop is busy, accepts
new connections first. It looks at the first request without reading it: a complete, authorised
halt is answered here, synchronously (`HaltController.halt_now` under its lock, on the halt
writer's connections), and the connection closed. Every other connection (other routes, refusals
with their lockout counting, bad bodies, `flatten`, anything incomplete after a few ms) is handed
to the event loop untouched, as if the loop had accepted it.

Parsing here is deliberately narrow: one request with a Content-Length body; anything else goes
to the loop, which has a real HTTP server."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cli_trading.logs import get_logger

log = get_logger("halt-door")

HALT_PATH = b"/admin/orchestrate/halt"
MAX_REQUEST = 64 * 1024
PREFIX = b"POST " + HALT_PATH
WAIT_FOR_REQUEST_S = 0.05  # a client that has not sent its request by then goes to the loop


@dataclass
class DoorRequest:
    addr: str
    headers: dict[str, str]
    body: bytes
    size: int  # bytes of the request on the wire (read before answering)
    request_id: str = field(default="")


# answers a halt request: (status, JSON body) or None to hand the connection to the loop
Handler = Callable[[DoorRequest], tuple[int, dict[str, Any]] | None]


def parse(data: bytes, addr: str) -> DoorRequest | None:
    """A complete `POST /admin/orchestrate/halt` request, or None (not one, or not complete)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[1].split(b"?", 1)[0] != HALT_PATH:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "transfer-encoding" in headers or "expect" in headers:
        return None
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return None
    if length < 0 or len(data) < end + 4 + length:
        return None
    return DoorRequest(addr, headers, data[end + 4 : end + 4 + length], end + 4 + length)


def response(status: int, body: dict[str, Any], request_id: str) -> bytes:
    payload = orjson.dumps(body)
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + payload


class HaltDoor:
    def __init__(self, sock: socket.socket, *, handle: Handler, adopt: Callable[[socket.socket], None]) -> None:
        self.sock, self.handle, self.adopt = sock, handle, adopt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="halt-door", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # the event loop took it
            except OSError:
                return  # the listening socket is closed: the server is shutting down
            try:
                self._serve(conn, addr[0] if isinstance(addr, tuple) else "unknown")
            except Exception as exc:  # noqa: BLE001 - the door must keep standing; the loop still serves
                log.error("halt door failed on a connection", error=repr(exc)[:200])
                with contextlib.suppress(OSError):
                    conn.close()

    def _serve(self, conn: socket.socket, addr: str) -> None:
        request = self._peek(conn, addr)
        answer = self.handle(request) if request is not None else None
        if request is None or answer is None:
            conn.setblocking(False)
            self.adopt(conn)
            return
        conn.settimeout(1.0)
        left = request.size  # read what was peeked: closing over unread bytes would reset
        while left > 0 and (chunk := conn.recv(left)):
            left -= len(chunk)
        conn.sendall(response(*answer, request.request_id))
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        conn.close()

    def _peek(self, conn: socket.socket, addr: str) -> DoorRequest | None:
        """The first request, once complete, without taking it off the socket."""
        deadline = time.monotonic() + WAIT_FOR_REQUEST_S
        conn.setblocking(False)
        data = b""
        while True:
            with contextlib.suppress(BlockingIOError):
                data = conn.recv(MAX_REQUEST, socket.MSG_PEEK)
                if not data:
                    return None  # closed before sending anything
            if (request := parse(data, addr)) is not None:
                return request
            if data[: len(PREFIX)] != PREFIX[: len(data)]:
                return None  # not a halt: the loop's
            left = deadline - time.monotonic()
            if left <= 0 or len(data) >= MAX_REQUEST:
                return None
            if data:
                time.sleep(0.001)  # part of it is there (still readable): wait for the rest
            else:
                select.select([conn], [], [], left)
