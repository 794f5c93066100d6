"""Backtest throughput and memory (docs/benchmarks.md, "Backtest").

Both shipped strategies with every risk rule active (a trading window, a blocked side that is
never asked for, the notional caps, the rate limit) and the daily halts, through
`cli_trading.backtest.run`:

- the shipped BTC-USD hourly history (5,000 bars, parsed once beforehand): the same parsed bars
  run after run (`bars_per_s`, as in the optimizer's runs), and fresh copies of them each run
  (`bars_per_s_fresh_bars`, as in a single `cli-trading backtest`; the CSV reader gives a bar
  its float prices, parsed from the text, so the two now differ only by the copies' caches);
- a 1,000,000-bar synthetic hourly history (a random walk), streamed from a generator: bars are
  made as they are consumed, so memory must stay flat; the peak RSS is compared with a 100,000-bar
  run's. The generator's own cost is measured alone and reported (it is not the engine's).

Run under the heavy lock: flock /work/heavy.lock .venv/bin/python bench/backtest_speed.py
CPU time of this process (time.process_time) is the measure: one core, robust to other load.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

from cli_trading.backtest import BacktestResult, run
from cli_trading.config import DEFAULTS_DIR
from cli_trading.market.bars import Bar, load_bars
from cli_trading.trading.risk import RiskRules
from cli_trading.trading.strategy_config import load_strategy_config

RULES = RiskRules(
    trading_window_utc=(dtime(0, 0), dtime(23, 59, 59)),
    blocked_sides=["short"],  # the rule runs on every request; nothing asks for "short"
    max_orders_per_minute=600,
)


def synthetic(n: int, seed: int = 7) -> Iterator[Bar]:
    """An hourly random walk (GBM, 0.8% hourly volatility), made bar by bar, each price's text
    parsed as a Decimal and as a float (as the CSV reader does)."""
    rng = random.Random(seed)
    t, px = datetime(2020, 1, 1, tzinfo=UTC), 10_000.0
    hour = timedelta(hours=1)
    one = Decimal(1)
    for _ in range(n):
        nxt = px * math.exp(rng.gauss(0, 0.008))
        ot, ct = f"{px:.2f}", f"{nxt:.2f}"
        o, c, fo, fc = Decimal(ot), Decimal(ct), float(ot), float(ct)
        # the floats parsed from the same text, as a CSV source gives them (datacheck.Row.floats)
        yield Bar("SYN-USD", t, o, max(o, c), min(o, c), c, one, (fo, max(fo, fc), min(fo, fc), fc, 1.0))
        t, px = t + hour, nxt


def cpu(fn: object) -> float:
    start = time.process_time()
    fn()  # type: ignore[operator]  # a callable
    return time.process_time() - start


def calibration() -> float:
    """CPU µs of sum(range(1000)): how fast this machine is right now (about 8-10 on a quiet core)."""
    return min(cpu(lambda: [sum(range(1000)) for _ in range(2000)]) for _ in range(5)) / 2000 * 1e6


STRATEGIES = load_strategy_config(DEFAULTS_DIR / "strategies.yaml")  # both shipped strategies


def _best(bars: list[Bar], repeats: int, fresh: bool) -> tuple[float, BacktestResult]:
    best, res = math.inf, None
    for _ in range(repeats):
        # fresh: new Bar objects as a single CLI run's CSV parse makes them (since 2026-11-30
        # afternoon with their floats parsed from the text); else the same bars every time
        run_bars = [replace(b) for b in bars] if fresh else bars
        start = time.process_time()
        res = run({"BTC-USD": run_bars}, STRATEGIES, RULES, keep_fills=False)
        best = min(best, time.process_time() - start)
    assert res is not None
    return best, res


def shipped(repeats: int) -> dict[str, object]:
    bars = load_bars("BTC-USD")
    best, res = _best(bars, repeats, fresh=False)
    fresh, _ = _best(bars, repeats, fresh=True)
    return {
        "bars": len(bars),
        "cpu_s": round(best, 3),
        "bars_per_s": round(len(bars) / best),
        "bars_per_s_fresh_bars": round(len(bars) / fresh),
        "fills": res.metrics.fills,
        "rejected": res.counters.rejected,
        "halts": {str(k): v for k, v in res.counters.halts.items()},
    }


def streamed(n: int) -> dict[str, object]:
    gen_s = cpu(lambda: sum(1 for _ in synthetic(n)))
    start = time.process_time()
    res = run({"SYN-USD": synthetic(n)}, STRATEGIES, RULES, keep_fills=False)
    total = time.process_time() - start
    engine = total - gen_s
    return {
        "bars": n,
        "cpu_s_total": round(total, 2),
        "generator_cpu_s": round(gen_s, 2),
        "bars_per_s_engine": round(n / engine),
        "bars_per_s_with_generator": round(n / total),
        "fills": res.metrics.fills,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = {"calibration_us_sum_range_1000": round(calibration(), 2), "shipped": shipped(args.repeats)}
    out["streamed_100k"] = streamed(100_000)  # first: the peak RSS below is the larger run's
    out["streamed"] = streamed(args.bars)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
