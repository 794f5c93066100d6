"""`cli-trading up`'s live lines (ticker.py) from the real streams: a line per fill and per
rejection, at most `per_s` a second with a summary of the rest, and under load one read per
`MIN_READ_INTERVAL_S` taking everything that came meanwhile (not a read per message)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis

from cli_trading import ticker
from cli_trading.ticker import Ticker

pytestmark = pytest.mark.integration


def status(n: int, state: str = "filled") -> dict[Any, Any]:
    msg = {"orderId": f"ord-{n}", "status": state, "side": "buy", "qty": "0.01", "symbol": "BTC-USD",
           "price": "100", "fee": "0.1", "reason": "halted" if state != "filled" else None}
    return {"data": orjson.dumps(msg)}


def test_lines_for_fills_and_rejections_and_reads_batched_under_load(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    t = Ticker(redis_url, per_s=3)
    try:
        r.xadd("exec.status", status(0))  # before the ticker: not shown
        assert t.poll(10) == []  # only what comes after the first read, nothing missed between reads
        r.xadd("exec.status", status(1))
        r.xadd("exec.status", status(2, "rejected"))
        rejected: dict[Any, Any] = {"data": orjson.dumps({"requestId": "req-3", "ok": False, "reason": "exposure"})}
        r.xadd("risk.responses", rejected)
        r.xadd("risk.responses", {"data": orjson.dumps({"requestId": "req-4", "ok": True})})
        r.xadd("exec.status", {"data": b"not json"})  # never a line, never a crash
        lines = t.poll(10)
        assert [line.split("]")[0] for line in lines] == ["[green", "[red", "[yellow"]
        assert "0.01 BTC-USD @ 100" in lines[0] and "halted" in lines[1] and "exposure" in lines[2]
        # messages keep coming: the next read waits for the interval, then takes them all at once
        for n in range(5, 25):
            r.xadd("exec.status", status(n))
        calls = []
        real = t.r.xread

        def counting(*a: object, **kw: object) -> object:
            calls.append(time.monotonic())
            return real(*a, **kw)  # type: ignore[arg-type]

        t.r.xread = counting  # type: ignore[method-assign,assignment]
        assert t.poll(10) == []  # over this second's 3 lines: counted, not shown
        assert len(calls) == 1 and t.skipped == 20
        assert t._next_read - calls[0] == pytest.approx(ticker.MIN_READ_INTERVAL_S, abs=0.05)
        t.window -= 1  # the second is over: the summary line comes with the next read
        r.xadd("exec.status", status(25))
        before = time.monotonic()
        summary, fill = t.poll(10)
        assert calls[1] - calls[0] >= ticker.MIN_READ_INTERVAL_S * 0.99 and calls[1] >= before
        assert "20 more fills/rejections" in summary and "[green]fill" in fill
    finally:
        r.close()
        t.r.close()
