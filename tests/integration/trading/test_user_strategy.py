"""A strategy of one's own, named by import path in strategies.yaml: docs/strategies.md's
example, taken from the page itself, backtested with `cli-trading backtest --config`."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
DOC = Path(__file__).parents[3] / "docs" / "strategies.md"


def example_code() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: my_strategies/breakout.py -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/strategies.md lost its example"
    return match.group(1)


def config(folder: Path, params: str) -> Path:
    pkg = folder / "my_strategies"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "breakout.py").write_text(example_code())
    (folder / "strategies.yaml").write_text(
        f"strategies:\n  - name: breakout\n    class: my_strategies.breakout:Breakout\n    params: {params}\n"
    )
    return folder


def backtest(cfg: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli_trading", "backtest", "--config", str(cfg), "--symbols", "BTC-USD"]
        + ["--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out.parent,  # the module is found through the config folder, not the working directory
    )


def test_the_documented_example_strategy_backtests(tmp_path: Path) -> None:
    run = backtest(config(tmp_path / "cfg", "{period: 48, k: 1.5}"), tmp_path / "out")
    assert run.returncode == 0, run.stderr
    metrics = json.loads(run.stdout)["metrics"]
    trades = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    assert metrics["fills"] == len(trades) > 10
    assert {t["strategy"] for t in trades} == {"breakout"}
    assert {t["side"] for t in trades} == {"buy", "sell"}
    assert {t["reason"] for t in trades} <= {"close above the upper band", "close below the lower band"}


def test_a_bad_parameter_of_a_user_strategy_is_refused_at_start(tmp_path: Path) -> None:
    run = backtest(config(tmp_path / "cfg", "{perod: 48}"), tmp_path / "out")
    assert run.returncode == 2
    assert "unknown parameter 'perod'" in run.stderr and "period" in run.stderr
