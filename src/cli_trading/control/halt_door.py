"""The halt door: POST /admin/orchestrate/halt answered off the orchestrator's event loop.

Under load the loop serves dozens of run requests per iteration, and a halt waited its turn to be
read (tens of ms); if the loop were stuck (a bug, a long call), the halt would not be read at all.
So a thread of its own accepts every new connection on the orchestrator's port and looks at the
first request without reading it. A complete, authorised halt is answered here, synchronously
(`HaltController.halt_now`: flag and notification, the answer, then the database record, on the
halt writer's own connections), and the connection closed. Every other connection (other routes,
refusals with their lockout counting, bad bodies, `flatten`, a request not all there yet) is handed
to the event loop untouched, as if the loop had accepted it; a request on a connection the client
keeps open (keep-alive) is the loop's from the start.

The thread asks the kernel for real-time priority (SCHED_FIFO) and, failing that, for a lower
nice value: on two saturated cores a halt otherwise waits for a core at every step. When neither
is allowed it runs at normal priority; the log says which it got ("halt door open").

Parsing here is deliberately narrow: one request with a Content-Length body; anything else goes
to the loop, which has a real HTTP server."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import sys
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
WAIT_FOR_REST_S = 0.05  # a halt request whose body has not all come by then goes to the loop
DEFER_ACCEPT_S = 1  # the kernel hands over a connection once its first bytes are there (or after this)
# the door thread waits for the interpreter lock at each step; the default 5 ms per wait is most
# of a halt's budget under load (the loop thread is asked to let go after this instead)
SWITCH_INTERVAL_S = 0.0005
TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}


@dataclass
class DoorRequest:
    addr: str
    headers: dict[str, str]
    body: bytes
    size: int  # bytes of the request on the wire (read before answering)
    request_id: str = field(default="")


# answers a halt request by calling `reply(status, body)` and returns True, or returns False to
# hand the connection to the loop (before replying)
Handler = Callable[[DoorRequest, Callable[[int, dict[str, Any]], None]], bool]


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
    """`adopt(conn)` gives a connection to the loop; `on_exit()` is called if the thread ends
    while the door is open (the loop must then accept on the socket itself)."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        handle: Handler,
        adopt: Callable[[socket.socket], None],
        on_exit: Callable[[], None],
    ) -> None:
        self.sock, self.handle, self.adopt, self.on_exit = sock, handle, adopt, on_exit
        self.priority = "normal"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="halt-door", daemon=True)

    def start(self) -> None:
        with contextlib.suppress(OSError):  # not Linux: connections are handed over as they come
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_S)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        self.priority = _set_priority(urgent=True)
        log.info("halt door open", priority=self.priority)
        try:
            self._accept_loop()
        finally:
            if not self._stop.is_set():
                log.error("halt door closed unexpectedly: the event loop accepts connections again")
                self.on_exit()

    def _accept_loop(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if exc.errno not in TRANSIENT_ACCEPT_ERRORS:
                    return  # the listening socket is closed: the server is shutting down
                log.warning("accept failed, retrying", error=str(exc))
                time.sleep(0.05)
                continue
            try:
                self._serve(conn, addr[0] if isinstance(addr, tuple) else "unknown")
            except Exception as exc:  # noqa: BLE001 - the door must keep standing
                log.error("halt door failed on a connection", error=repr(exc)[:200])
                with contextlib.suppress(OSError):
                    conn.close()

    def _serve(self, conn: socket.socket, addr: str) -> None:
        request = self._peek(conn, addr)
        if request is None:
            self._give(conn)
            return

        def reply(status: int, body: dict[str, Any]) -> None:
            # as few system calls as possible before the answer: after each one the thread
            # waits for the interpreter lock again, up to SWITCH_INTERVAL_S under load
            conn.sendall(response(status, body, request.request_id))
            # what follows (audit, the record) is not urgent: leave the cores to the client
            # that just got its answer and to the trading agents
            _set_priority(urgent=False)
            _drain(conn, request.size)  # take what was peeked: closing over unread bytes would reset
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)

        try:
            handled = self.handle(request, reply)
        finally:
            _set_priority(urgent=True)  # lowered once it answered; ready for the next halt
        if handled:
            conn.close()
        else:
            self._give(conn)

    def _give(self, conn: socket.socket) -> None:
        """Hand the connection to the event loop, untouched."""
        conn.setblocking(False)
        self.adopt(conn)

    def _peek(self, conn: socket.socket, addr: str) -> DoorRequest | None:
        """The first request, once complete, without taking it off the socket; None as soon as
        it is clearly not a halt."""
        deadline = time.monotonic() + WAIT_FOR_REST_S
        while True:
            try:
                data = conn.recv(MAX_REQUEST, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None  # nothing sent within DEFER_ACCEPT_S: the loop waits for it
            if not data:
                return None  # closed before sending anything
            if (request := parse(data, addr)) is not None:
                return request
            if data[: len(PREFIX)] != PREFIX[: len(data)] or len(data) >= MAX_REQUEST:
                return None  # not a halt: the loop's
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.001)  # a halt's head is there: wait a little for the rest


def _drain(conn: socket.socket, size: int) -> None:
    """Read `size` bytes that are already there (peeked), without blocking."""
    with contextlib.suppress(BlockingIOError):
        while size > 0 and (chunk := conn.recv(size, socket.MSG_DONTWAIT)):
            size -= len(chunk)


def _set_priority(*, urgent: bool) -> str:
    """Urgent: real-time priority for this thread if the process may (root, CAP_SYS_NICE or an
    RLIMIT_RTPRIO of 1), else nice -10 (CAP_SYS_NICE or an RLIMIT_NICE of 30), else none. The
    thread sleeps in poll() but for the few ms of a halt. Not urgent: back to normal."""
    tid = threading.get_native_id()
    if not urgent:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, os.getpid()))
        return "normal"
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
        return "realtime (SCHED_FIFO)"
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, tid, -10)
        return "nice -10"
    return "normal (allow SCHED_FIFO or a lower nice value for faster halts under load)"
