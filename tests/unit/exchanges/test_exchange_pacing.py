"""The trade executor's side of rate limits: the pacing that keeps requests under the ceiling as
the exchange counts them, and the desk's books that an order waiting out a 429 steps out of."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from cli_trading.exchanges.books import Books
from cli_trading.exchanges.ccxt_adapter import Pacer, pace
from cli_trading.exchanges.sim.faults import busiest


async def test_paced_requests_never_pass_the_ceiling_where_they_arrive() -> None:
    """Requests sent from several tasks at once, each arriving at the 'exchange' at a random
    moment between leaving the pacer and its answer (network and event-loop delays): no second at
    the exchange has more than the ceiling, and the pacer is not much slower than it."""
    rng = random.Random(7)
    arrived: list[float] = []

    class Ex:
        async def fetch(self, *_: Any) -> None:
            latency = rng.uniform(0.0, 0.15)
            arrives = rng.uniform(0.0, latency)
            await asyncio.sleep(arrives)
            arrived.append(time.monotonic())
            await asyncio.sleep(latency - arrives)

    ex: Any = Ex()
    pace(ex, 10)
    started = time.monotonic()
    await asyncio.gather(*(ex.fetch() for _ in range(30)))
    assert len(arrived) == 30
    assert busiest(arrived) <= 10, busiest(arrived)
    assert time.monotonic() - started < 4.5  # 30 at 10 a second, each counted until its answer + 1 s


def test_a_pacer_under_one_request_a_second_spaces_them_further() -> None:
    p = Pacer(0.5)
    assert (p.burst, p.window) == (1, 2.0)
    p = Pacer(8)
    assert (p.burst, p.window) == (8, 1.0)


async def test_the_holder_steps_out_of_the_books_while_it_waits() -> None:
    books = Books()
    order: list[str] = []

    async def waiting_order() -> None:
        async with books:
            order.append("order sent, refused 429")
            async with books.stepped_out():
                await asyncio.sleep(0.2)  # Retry-After
            order.append("order sent again")

    async def halt_cancel() -> None:
        await asyncio.sleep(0.05)
        async with books:
            order.append("resting order cancelled")

    await asyncio.gather(waiting_order(), halt_cancel())
    assert order == ["order sent, refused 429", "resting order cancelled", "order sent again"]
    assert not books.locked()


async def test_stepping_out_is_nothing_for_a_task_that_does_not_hold_the_books() -> None:
    books = Books()
    async with books.stepped_out():  # not held at all
        assert not books.locked()
    held = asyncio.Event()

    async def holder() -> None:
        async with books:
            held.set()
            await asyncio.sleep(0.1)

    task = asyncio.create_task(holder())
    await held.wait()
    async with books.stepped_out():  # held by another task: still held
        assert books.locked()
    await task
    assert not books.locked()


async def test_cancelled_while_taking_the_books_back_leaves_them_free() -> None:
    books = Books()
    stepped = asyncio.Event()

    async def waiting() -> None:
        async with books, books.stepped_out():
            stepped.set()
            await asyncio.sleep(0.05)

    async with books:
        task = asyncio.create_task(waiting())
        await asyncio.sleep(0)
    await stepped.wait()
    async with books:  # it cannot take them back while we hold them: cancel it then
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not books.locked()
