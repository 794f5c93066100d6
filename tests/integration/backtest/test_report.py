"""`cli-trading backtest` as a user runs it, and its report.html opened in headless Chromium:
the charts render and the page says nothing on the console (no errors, no warnings)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # .ci/run installs the Debian package


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli_trading", "backtest", *args], capture_output=True, text=True, timeout=300
    )


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message Chromium logged."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_backtest_writes_the_report_and_the_page_renders_offline(tmp_path: Path) -> None:
    out = tmp_path / "report"
    run = cli("--symbols", "BTC-USD", "--from", "2019-05-01", "--to", "2019-07-01", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    m = doc["metrics"]
    assert m["bars"] == 61 * 24 and m["start"].startswith("2019-05-01T00:00")
    for key in ("total_return_pct", "sharpe", "sortino", "max_drawdown_pct", "trades", "buy_and_hold_return_pct"):
        assert isinstance(m[key], int | float), key
    trades = list(csv.DictReader((out / "trades.csv").open()))
    assert len(trades) == m["fills"] > 0
    assert sum(1 for _ in (out / "equity.csv").open()) == m["bars"] + 1

    page = out / "report.html"
    text = page.read_text()
    assert not re.search(r"(?:src|href)\s*=|@import|url\(http|fetch\(", text)  # nothing to fetch: readable offline
    dom, console = render(page, tmp_path / "chromium")
    assert console == [], console
    assert 'data-rendered="3"' in dom  # equity, drawdown, BTC-USD price
    paths = re.findall(r'<path d="([^"]*)" class="series"', dom)
    assert len(paths) == 4 and all(p.count("L") > 100 for p in paths)  # equity, buy and hold, drawdown, price
    assert len(re.findall(r'class="marker (?:buy|sell)"', dom)) == len(trades)
    assert dom.count("<tr>") >= 15  # the metrics table


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    run = cli("--symbols", "DOGE-USD", "--out", str(tmp_path))
    assert run.returncode == 2 and "DOGE-USD" in run.stderr and "BTC-USD" in run.stderr
    run = cli("--symbols", "BTC-USD", "--from", "yesterday", "--out", str(tmp_path))
    assert run.returncode == 2 and "yesterday" in run.stderr
    run = cli("--symbols", "BTC-USD", "--from", "2030-01-01", "--out", str(tmp_path))
    assert run.returncode == 2 and "no BTC-USD bars" in run.stderr
    run = cli("--symbols", "BTC-USD", "--starting-cash", "-5", "--out", str(tmp_path))
    assert run.returncode == 2 and "starting-cash" in run.stderr
