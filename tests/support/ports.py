"""Blocks of free TCP ports for tests, never hard-coded: every pytest process on the machine (CI,
several developers' runs, helpers in other worktrees) takes blocks through one registry under a
file lock, so two runs never pick the same block, and a block is handed out only when every port
in it is free right now.

The range (22000–30999) is below the kernel's ephemeral range (32768+, where outgoing
connections take their local ports) and clear of the fixed ports of the acceptance checks
(7001–7007, 7100). A block reserved by a process that died is taken back.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

FIRST, LAST = 22000, 30999
STATE_DIR = Path(os.environ.get("CT_TEST_STATE_DIR", Path(tempfile.gettempdir()) / "cli-trading-tests"))
_mine: set[int] = set()


@contextlib.contextmanager
def _registry() -> Iterator[dict[str, dict[str, int]]]:
    """The reservations {base: {"pid": ..., "size": ...}}, read and written under an exclusive lock."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / "ports.json"
    with open(STATE_DIR / "ports.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                reserved = json.loads(path.read_text())
            except (OSError, ValueError):
                reserved = {}
            reserved = {b: r for b, r in reserved.items() if _alive(r["pid"])}
            yield reserved
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(reserved))
            tmp.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve(size: int = 10) -> int:
    """The first port of `size` consecutive free ports, reserved for this process until
    `release(base)` or its exit."""
    size = max(1, size)
    step = -(-size // 10) * 10  # blocks start on a multiple of ten: easy to read in logs
    with _registry() as reserved:
        taken = [(int(b), int(b) + r["size"]) for b, r in reserved.items()]
        for base in range(FIRST, LAST - size + 2, step):
            if any(lo < base + size and base < hi for lo, hi in taken):
                continue
            if all(_bindable(p) for p in range(base, base + size)):
                reserved[str(base)] = {"pid": os.getpid(), "size": size}
                _mine.add(base)
                return base
    raise RuntimeError(f"no block of {size} free ports left in {FIRST}-{LAST}")


def release(base: int) -> None:
    with _registry() as reserved:
        reserved.pop(str(base), None)
    _mine.discard(base)


def free_port() -> int:
    """One reserved port (for a test server that must know its port before it starts)."""
    return reserve(1)


@atexit.register
def _release_all() -> None:
    if _mine:
        with _registry() as reserved:
            for base in _mine:
                reserved.pop(str(base), None)
