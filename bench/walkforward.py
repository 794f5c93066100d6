"""Walk-forward speed: the 24-point grid of the trend strategy (the optimizer's default grid) over
the shipped BTC-USD hourly history (5,000 bars), 4 windows, through the real backtest engine
with the shipped strategies and risk rules, spread over the cores.

    flock /work/heavy.lock .venv/bin/python bench/walkforward.py [--repeat 5] [--workers N] [--json]

Each repeat is timed end to end as `cli-trading optimize` spends it: the worker processes
started, every parameter set backtested over the whole history, the windows selected, the
proposals made. The first repeat is reported apart (cold imports in the workers). Target: under
5 s on this 2-core machine (issue 16)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from dataclasses import asdict

from cli_trading.backtest import SimConfig
from cli_trading.config import DEFAULTS_DIR, load_yaml
from cli_trading.market.bars import load_bars
from cli_trading.research.runs import Study, default_workers, trace
from cli_trading.research.walkforward import Spec, optimize
from cli_trading.trading.risk import RiskFile
from cli_trading.trading.strategy_config import load_strategy_config

TARGET_S = 5.0


def study() -> Study:
    rules = load_yaml(DEFAULTS_DIR / "risk.yaml", RiskFile).risk
    strategies = load_strategy_config(DEFAULTS_DIR / "strategies.yaml")
    return Study.of("BTC-USD", load_bars("BTC-USD"), strategies, rules, **asdict(SimConfig()))


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    st = study()
    workers = args.workers or default_workers()
    t0 = time.perf_counter()
    trace(st, "trend", None)
    one_run = time.perf_counter() - t0
    times, cpu, evaluated, proposals = [], [], 0, 0
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), _cpu()
        out = optimize(st, Spec("trend"), workers=workers)
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu() - c0)  # the workers' CPU time too: they have ended with their pool
        evaluated, proposals = out.evaluated, len(out.proposals)
    warm = times[1:] or times
    doc = {
        "bars": len(st.bars),
        "parameterSets": evaluated,
        "windows": 4,
        "workers": workers,
        "cores": os.cpu_count(),
        "loadAverage": os.getloadavg()[0],
        "oneRunSeconds": round(one_run, 3),
        "oneRunBarsPerSecond": round(len(st.bars) / one_run),
        "firstSeconds": round(times[0], 3),
        "medianSeconds": round(statistics.median(warm), 3),
        "bestSeconds": round(min(warm), 3),
        # CPU seconds of the parent and its workers: what the search costs whatever else runs
        # on the machine; divided by the workers, the wall time it would take on idle cores
        "medianCpuSeconds": round(statistics.median(cpu[1:] or cpu), 3),
        "idleEstimateSeconds": round(statistics.median(cpu[1:] or cpu) / workers, 3),
        "proposals": proposals,
        "targetSeconds": TARGET_S,
        "met": statistics.median(warm) < TARGET_S,
    }
    if args.json:
        print(json.dumps(doc))
        return
    for k, v in doc.items():
        print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
