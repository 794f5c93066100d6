"""Backtest instructions per bar under callgrind: a measure of the engine's work that does not
depend on how busy the machine is (docs/benchmarks.md, "Backtest").

    .venv/bin/python bench/backtest_instructions.py            # shipped history (~3 minutes)
    .venv/bin/python bench/backtest_instructions.py --streamed # and streamed bars (~10 minutes)

Each figure is a difference of two runs, so start-up and imports cancel out:

- shipped: (3 runs - 1 run) of the shipped BTC-USD history, the same parsed bars each run, with
  bench/backtest_speed.py's strategies and rules, divided by 2 x 5,000 bars;
- streamed: (60,000 - 20,000) synthetic bars streamed from backtest_speed's generator, minus the
  generator alone over the same counts: the engine's instructions per bar.

Needs valgrind. Runs its workloads itself: `--workload shipped 3` etc.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def workload(kind: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from backtest_speed import RULES, STRATEGIES, synthetic

    from cli_trading.backtest import run
    from cli_trading.market.bars import load_bars

    if kind == "shipped":
        bars = load_bars("BTC-USD")
        for _ in range(n):
            run({"BTC-USD": bars}, STRATEGIES, RULES, keep_fills=False)
    elif kind == "streamed":
        run({"SYN-USD": synthetic(n)}, STRATEGIES, RULES, keep_fills=False)
    elif kind == "generator":
        sum(1 for _ in synthetic(n))


def instructions(kind: str, n: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    out = subprocess.run([*cmd, "--workload", kind, str(n)], capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamed", action="store_true", help="also the streamed synthetic bars")
    ap.add_argument("--workload", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workload:
        workload(args.workload[0], int(args.workload[1]))
        return
    shipped = (instructions("shipped", 3) - instructions("shipped", 1)) / 10_000
    print(f"shipped history, same parsed bars: {shipped:,.0f} instructions per bar")
    if args.streamed:
        lo, hi = 20_000, 60_000
        total = instructions("streamed", hi) - instructions("streamed", lo)
        gen = instructions("generator", hi) - instructions("generator", lo)
        print(f"streamed: {(total - gen) / (hi - lo):,.0f} per bar (engine), generator {gen / (hi - lo):,.0f}")


if __name__ == "__main__":
    main()
