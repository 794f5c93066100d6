"""The port-block allocator the fixtures use: blocks never overlap, across processes too, and a
dead process's blocks are taken back."""

from __future__ import annotations

import json
import multiprocessing
import socket
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from tests.support import ports


@pytest.fixture(autouse=True)
def _own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "STATE_DIR", tmp_path)
    # a range of its own: the real registry's users (other test runs on the machine) bind ports in
    # theirs, which this private registry cannot see
    monkeypatch.setattr(ports, "FIRST", 31000)
    monkeypatch.setattr(ports, "LAST", 31999)


def _reserve_in_child(q: multiprocessing.Queue, done: Event) -> None:  # type: ignore[type-arg]
    q.put(ports.reserve(10))
    done.wait(10)  # alive until every block is taken: a dead process's block is rightly taken back


def test_blocks_do_not_overlap_within_and_across_processes() -> None:
    mine = [ports.reserve(10) for _ in range(3)]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    done = ctx.Event()
    children = [ctx.Process(target=_reserve_in_child, args=(q, done)) for _ in range(3)]
    for c in children:
        c.start()
    theirs = [q.get(timeout=10) for _ in children]
    done.set()
    for c in children:
        c.join(10)
    bases = sorted(mine + theirs)
    assert all(b + 10 <= nxt for b, nxt in zip(bases, bases[1:], strict=False)), bases


def test_a_port_in_use_is_skipped() -> None:
    base = ports.reserve(10)
    ports.release(base)
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 3))
        s.listen()
        again = ports.reserve(10)
        assert not again <= base + 3 < again + 10
    ports.release(again)


def test_blocks_of_dead_processes_are_taken_back(tmp_path: Path) -> None:
    base = ports.reserve(10)  # a block free right now (other processes on the machine use ports too)
    ports.release(base)
    (tmp_path / "ports.json").write_text(json.dumps({str(base): {"pid": 2**22 + 1, "size": 10}}))  # no such pid
    assert ports.reserve(10) == base
