"""`cli-trading data download` through ccxt's own `binance` class against a real local HTTP
server answering Binance's klines; `data check` and `data import`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli_trading.cli import app
from cli_trading.cli.data import make_exchange
from cli_trading.market.bars import load_bars
from cli_trading.market.download import download
from tests.integration.market.klines_server import Klines, serve
from tests.support.ports import free_port

HOUR = 3_600_000
SHIPPED = load_bars("BTC-USD")[:2600]


def candles(bars: Any = SHIPPED) -> list[list[Any]]:
    return [[int(b.ts.timestamp() * 1000), b.open, b.high, b.low, b.close, b.volume] for b in bars]


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["data", *args], catch_exceptions=False)


def dl_args(url: str, out: Path, *extra: str) -> list[str]:
    return ["download", "--api-url", url, "--symbol", "BTC/USDT", "--since", "2019-03-23", "--out", str(out), *extra]


def test_download_pages_through_the_history_into_a_file_the_loader_reads(tmp_path: Path) -> None:
    state = Klines(candles())
    with serve(state) as url:
        res = run(*dl_args(url, tmp_path, "--json"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["candles"], doc["added"], doc["check"]["ok"]) == (2600, 2600, True)
    starts = [int(q["startTime"]) for q in state.requests]
    assert [q["limit"] for q in state.requests] == ["1000"] * 4
    since = int(datetime(2019, 3, 23, tzinfo=UTC).timestamp() * 1000)
    assert starts == [since, candles()[999][0] + HOUR, candles()[1999][0] + HOUR, candles()[-1][0] + HOUR]
    assert set(state.paths) == {"/api/v3/exchangeInfo", "/api/v3/klines"}, "nothing else asked of the exchange"
    got = load_bars("BTC-USDT", tmp_path)
    assert [(b.ts, b.open, b.high, b.low, b.close, b.volume) for b in got] == [
        (b.ts, b.open, b.high, b.low, b.close, b.volume) for b in SHIPPED
    ]


def test_an_interrupted_download_resumes_after_the_last_stored_candle(tmp_path: Path) -> None:
    state = Klines(candles(), fail_at={3: (400, {"code": -1100, "msg": "Illegal characters found"})})
    with serve(state) as url:
        first = run(*dl_args(url, tmp_path))
        assert first.exit_code == 1 and "BadRequest" in first.output, first.output
        assert len(load_bars("BTC-USDT", tmp_path)) == 2000, "the pages fetched before the failure are kept"
        state.requests.clear()
        again = run(*dl_args(url, tmp_path, "--json"))
    assert again.exit_code == 0, again.output
    assert int(state.requests[0]["startTime"]) == candles()[1999][0] + HOUR
    doc = json.loads(again.stdout)
    assert (doc["before"], doc["added"], doc["candles"]) == (2000, 600, 2600)
    assert [b.close for b in load_bars("BTC-USDT", tmp_path)] == [b.close for b in SHIPPED]
    assert [p.name for p in tmp_path.iterdir()] == ["BTC-USDT_1h.csv"], "no temporary file left"


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    state = Klines(candles()[:50], fail_at={1: (503, {"code": -1001, "msg": "Internal error"})})
    with serve(state) as url:
        res = run(*dl_args(url, tmp_path, "--json"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["candles"] == 50 and len(state.requests) == 3  # failed, 50 candles, empty


def test_the_candle_still_forming_is_not_stored(tmp_path: Path) -> None:
    now = datetime(2024, 1, 1, 5, 30, tzinfo=UTC).timestamp()
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows = [[t0 + i * HOUR, 10, 11, 9, 10, 1] for i in range(6)]  # the 05:00 candle closes at 06:00
    with serve(Klines(rows)) as url:
        result = download(
            make_exchange("binance", url),
            "BTC/USDT",
            "1h",
            datetime(2024, 1, 1, tzinfo=UTC),
            tmp_path / "BTC-USDT_1h.csv",
            clock=lambda: now,
        )
    assert result.added == 5 and result.last == datetime(2024, 1, 1, 4, tzinfo=UTC)
    assert load_bars("BTC-USDT", tmp_path)[-1].close == Decimal(10)


def test_clear_errors(tmp_path: Path) -> None:
    with serve(Klines(candles()[:10])) as url:
        bad_symbol = run(*dl_args(url, tmp_path, "--symbol", "ETH/USDT"))
        no_since = run("download", "--api-url", url, "--symbol", "BTC/USDT", "--out", str(tmp_path))
        bad_tf = run(*dl_args(url, tmp_path, "--timeframe", "7x"))
        (tmp_path / "BTC-USDT_1h.csv").write_text("ts,open,high,low,close,volume\n2019-03-23T02:00:00Z,1,0.5,1,1,1\n")
        damaged = run(*dl_args(url, tmp_path))
    assert bad_symbol.exit_code == 1 and "BadSymbol" in bad_symbol.output
    assert no_since.exit_code == 2 and "give --since" in no_since.output
    assert bad_tf.exit_code == 2 and "7x" in bad_tf.output
    assert damaged.exit_code == 2 and "line 2: high 0.5 below low 1" in damaged.output
    assert run("download", "--exchange", "nope", "--symbol", "A/B", "--since", "2024-01-01").exit_code == 2


def test_the_command_runs_as_a_user_runs_it(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("cli-trading")
    with serve(Klines(candles()[:1200])) as url:
        proc = subprocess.run(
            [str(exe), "data", *dl_args(url, tmp_path)], capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "120"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1200" in proc.stdout and "BTC-USDT_1h.csv" in proc.stdout
    assert len(load_bars("BTC-USDT", tmp_path)) == 1200


# -- check and import ---------------------------------------------------------------------------


def test_check_names_the_lines_and_import_fills_or_refuses_gaps(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_text(
        "ts,open,high,low,close,volume\n"
        "1704067200000,10,11,9,10,1\n1704070800000,10,11,9,10.5,1\n1704081600000,10.5,12,10,11,2\n"
    )
    checked = run("check", str(src), "--timeframe", "1h", "--json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["missingBars"] == 2
    refused = run("import", str(src), "--symbol", "SOL-USD", "--timeframe", "1h", "--out", str(tmp_path / "d"))
    assert refused.exit_code == 1 and "line 3 and 4" in refused.output and not (tmp_path / "d").exists()
    filled = run("import", str(src), "--symbol", "SOL-USD", "--timeframe", "1h", "--out", str(tmp_path / "d"),
                 "--gaps", "fill")  # fmt: skip
    assert filled.exit_code == 0, filled.output
    bars = load_bars("SOL-USD", tmp_path / "d", gaps="refuse")
    assert [b.close for b in bars] == [Decimal(x) for x in ("10", "10.5", "10.5", "10.5", "11")]
    src.write_text("ts,open,high,low,close,volume\n2024-01-01,10,11,9,-1,1\n")
    bad = run("check", str(src))
    assert bad.exit_code == 1 and "line 2" in bad.output and "close" in bad.output


@pytest.mark.parametrize("name", ["missing.csv"])
def test_check_of_a_missing_file(tmp_path: Path, name: str) -> None:
    res = run("check", str(tmp_path / name))
    assert res.exit_code == 2 and "cannot read" in res.output


# -- against the project's Binance simulator -----------------------------------------------------


def test_download_from_the_exchange_simulator_then_backtest_it(tmp_path: Path) -> None:
    import signal
    import time

    import httpx

    port = free_port()
    exe = str(Path(sys.executable).with_name("cli-trading"))
    sim = subprocess.Popen(
        [exe, "exchange-sim", "--port", str(port), "--data-dir", str(tmp_path / "sim"), "--api-key", "k",
         "--api-secret", "s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v3/time", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("exchange-sim did not answer in 60 s")
        since = datetime.fromtimestamp(time.time() - 3 * 86400, UTC).strftime("%Y-%m-%dT%H:00")
        url = f"http://127.0.0.1:{port}"
        args = ["download", "--api-url", url, "--symbol", "BTC/USDT", "--since", since, "--out", str(tmp_path)]
        first = run(*args, "--limit", "50", "--json")
        assert first.exit_code == 0, first.output
        doc = json.loads(first.stdout)
        assert 70 <= doc["candles"] <= 72 and doc["requests"] >= 2 and doc["check"]["ok"]
        bars = load_bars("BTC-USDT", tmp_path, gaps="refuse")  # contiguous hours, every one closed
        assert bars[-1].ts.timestamp() + 3600 <= time.time()
        again = json.loads(run(*args, "--json").stdout)
        assert again["before"] == doc["candles"] and again["added"] <= 1
    finally:
        os.killpg(sim.pid, signal.SIGINT)
        try:
            sim.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait()
    bt = CliRunner().invoke(
        app, ["backtest", "--symbols", "BTC-USDT", "--data", str(tmp_path / "BTC-USDT_1h.csv"), "--json",
              "--out", str(tmp_path / "report")],
    )  # fmt: skip
    assert bt.exit_code == 0, bt.output
    assert json.loads(bt.stdout)["metrics"]["bars"] == again["candles"]
