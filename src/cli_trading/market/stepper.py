"""Step mode for the replay (`cli-trading up --step`): a deterministic replay, bar by bar.

The market analyst publishes a step's bars, then waits until the whole pipeline has settled —
every consumer group of every stream a bar sets off (bars → analysis → signal → risk → order →
status) has read everything and acknowledged it — before it publishes the next step. Each
bar's runs therefore finish, fills included, before the next bar exists: the order of events is
the backtest's, and paper trading the same bars gives the same fills (tests/e2e/test_parity.py).

Settled is read from Redis itself (XINFO): a group has settled when its last delivered id is the
stream's last id and nothing is pending. Every handler on the way writes its output before its
acknowledgement (or with it, atomically), so there is no moment where a message is acknowledged
and its consequence not yet visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from redis.exceptions import ResponseError

from cli_trading.contracts import SUBSCRIPTIONS, Stream
from cli_trading.streamops import parse_id, text

# what one bar sets off, and who reads it
PIPELINE: dict[str, tuple[str, ...]] = {
    s: SUBSCRIPTIONS[s]
    for s in (
        Stream.BARS,
        Stream.COMMANDS,
        Stream.SIGNALS,
        Stream.RISK_REQUESTS,
        Stream.RISK_RESPONSES,
        Stream.ORDERS,
        Stream.STATUS,
    )
}
BARS_READ: dict[str, tuple[str, ...]] = {Stream.BARS: SUBSCRIPTIONS[Stream.BARS]}


class Stepper:
    """Waits for the pipeline to settle. `poll_s`: how often Redis is asked while waiting."""

    def __init__(self, redis: Any, *, poll_s: float = 0.003) -> None:
        self.redis, self.poll_s = redis, poll_s

    async def settled(self, streams: Mapping[str, tuple[str, ...]] = PIPELINE) -> bool:
        """Has every listed group of every listed stream read and acknowledged everything?
        False while a group does not exist yet (its agent has not started)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xinfo_stream(stream)
            pipe.xinfo_groups(stream)
        try:
            answers = await pipe.execute()
        except ResponseError:  # a stream not created yet
            return False
        for k, groups in enumerate(streams.values()):
            info, found = answers[2 * k], answers[2 * k + 1]
            last = parse_id(info.get("last-generated-id") or info.get(b"last-generated-id") or "0-0")
            by_name = {text(g.get("name") or g.get(b"name")): g for g in found}
            for group in groups:
                g = by_name.get(group)
                if g is None:
                    return False
                pending = int(g.get("pending", g.get(b"pending", 0)))
                delivered = parse_id(g.get("last-delivered-id") or g.get(b"last-delivered-id") or "0-0")
                if pending or delivered < last:
                    return False
        return True

    async def settle(self, streams: Mapping[str, tuple[str, ...]] = PIPELINE, *, timeout_s: float = 300.0) -> None:
        """Return once `settled`; TimeoutError after `timeout_s` (a stuck agent: say so, don't hang)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await self.settled(streams):
            if loop.time() > deadline:
                raise TimeoutError(f"the pipeline did not settle within {timeout_s:.0f} s (is every agent running?)")
            await asyncio.sleep(self.poll_s)
