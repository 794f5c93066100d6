"""Golden runs: fixed backtests give exactly the fills, counters, halts, metrics and chart recorded
before the engine's speed work (issue 16). Any change to the pipeline's code that is meant to make
it faster, not different, must keep these byte for byte.

A difference is reported at its first line. When a change is *meant* to alter decisions, write
new golden files on purpose and say why in the commit:

    .venv/bin/python -m tests.unit.backtest.test_golden --write
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path

import pytest

from cli_trading.backtest import BacktestResult, run
from cli_trading.config import DEFAULTS_DIR
from cli_trading.market.bars import Bar, load_bars
from cli_trading.trading.risk import RiskRules
from cli_trading.trading.strategy_config import load_strategy_config

GOLDEN = Path(__file__).parent / "golden"
STRATEGIES = load_strategy_config(DEFAULTS_DIR / "strategies.yaml")  # both shipped strategies
# the shipped risk rules with a trading window: rejections of another kind, fewer fills
WINDOW = RiskRules(trading_window_utc=(dtime(6, 0), dtime(18, 0)), blocked_sides=["short"])
# 20-second bars: the rate limit rejects
RATE = RiskRules(max_orders_per_minute=2)


def synthetic(n: int, seed: int = 7, step: timedelta = timedelta(hours=1)) -> Iterator[Bar]:
    """A random walk (bench/backtest_speed.py's, hourly by default), streamed."""
    rng = random.Random(seed)
    t, px, one = datetime(2020, 1, 1, tzinfo=UTC), 10_000.0, Decimal(1)
    for _ in range(n):
        nxt = px * math.exp(rng.gauss(0, 0.008))
        o, c = Decimal(f"{px:.2f}"), Decimal(f"{nxt:.2f}")
        yield Bar("SYN-USD", t, o, max(o, c), min(o, c), c, one)
        t, px = t + step, nxt


CASES: dict[str, Callable[[], BacktestResult]] = {
    "btc_shipped": lambda: run({"BTC-USD": load_bars("BTC-USD")}),
    "btc_window": lambda: run({"BTC-USD": load_bars("BTC-USD")}, STRATEGIES, WINDOW),
    "eth_daily": lambda: run({"ETH-USD": load_bars("ETH-USD")}, STRATEGIES),
    "two_symbols": lambda: run({"BTC-USD": load_bars("BTC-USD"), "ETH-USD": load_bars("ETH-USD")}, STRATEGIES),
    "rate_limit": lambda: run({"SYN-USD": synthetic(3000, 3, timedelta(seconds=20))}, STRATEGIES, RATE),
    "synthetic_30k": lambda: run({"SYN-USD": synthetic(30_000)}, STRATEGIES, keep_fills=True),
}
BIG = {"synthetic_30k"}  # kept as a digest of its text (the fills alone would be ~1 MB)


def text(res: BacktestResult) -> str:
    """Everything a run produced, one line per item, exactly as `str`/`repr` spell it."""
    lines = ["|".join(map(str, f[:-2])) + f"|{f.confidence!r}|{f.reason}" for f in res.fills]
    c = res.counters
    halts = sorted((str(k), v) for k, v in c.halts.items())
    lines.append(f"counters {c.steps} {c.runs} {c.holds} {sorted(c.rejected.items())} {halts}")
    lines += [f"halt {h.ts.isoformat()} {h.action} {h.reason} {h.day}" for h in res.halts]
    lines.append(json.dumps(res.metrics.as_dict(), sort_keys=True))
    chart = "\n".join(repr(tuple(p)) for p in res.chart)
    lines.append(f"chart {len(res.chart)} {hashlib.sha256(chart.encode()).hexdigest()}")
    lines.append(f"final {res.final_cash} {sorted((s, str(q)) for s, q in res.positions.items())}")
    return "\n".join(lines) + "\n"


def golden_text(name: str, got: str) -> str:
    return f"sha256 {hashlib.sha256(got.encode()).hexdigest()}\n" if name in BIG else got


@pytest.mark.parametrize("name", list(CASES))
def test_the_run_is_the_golden_one(name: str) -> None:
    got = golden_text(name, text(CASES[name]()))
    want = gzip.decompress((GOLDEN / f"{name}.txt.gz").read_bytes()).decode()
    if got != want:
        g, w = got.splitlines(), want.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(g, w, strict=False)) if a != b), min(len(g), len(w)))
        pytest.fail(
            f"{name}: line {first + 1} differs ({len(g)} lines, golden {len(w)}):\n"
            f"  got    {g[first] if first < len(g) else '<end>'}\n  golden {w[first] if first < len(w) else '<end>'}"
        )


def test_the_golden_runs_trade_and_reject() -> None:
    """The golden files cover buys, sells, risk rejections of several kinds and both halts."""
    for name in set(CASES) - BIG:
        body = gzip.decompress((GOLDEN / f"{name}.txt.gz").read_bytes()).decode()
        assert "|buy|" in body and "|sell|" in body, name
    window = gzip.decompress((GOLDEN / "btc_window.txt.gz").read_bytes()).decode()
    assert "'trading_window'" in window
    rate = gzip.decompress((GOLDEN / "rate_limit.txt.gz").read_bytes()).decode()
    assert "'max_orders_per_minute'" in rate
    shipped = gzip.decompress((GOLDEN / "btc_shipped.txt.gz").read_bytes()).decode()
    assert "daily_target_reached" in shipped and "daily_loss_limit" in shipped


def write() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, case in CASES.items():
        data = golden_text(name, text(case())).encode()
        (GOLDEN / f"{name}.txt.gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        print(name, len(data))


if __name__ == "__main__" and "--write" in sys.argv:
    write()
