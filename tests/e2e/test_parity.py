"""Parity: paper trading a stretch of history through `cli-trading up --step` gives exactly the
fills the backtest gives for the same bars — side, quantity, price and fee, in order — with the
risk rules, sizing, fees, slippage and the daily halts (per market day) all at work."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import httpx

from cli_trading.backtest import load_series, run
from cli_trading.config import load_settings
from tests.e2e.conftest import start_system

BARS = slice(300, 600)  # 300 hourly bars with buys, sells, both daily halts and risk rejections
LIMITS = {"DAILY_TARGET_PCT": "2", "DAILY_LOSS_LIMIT_PCT": "1"}


def history(folder: Path) -> Path:
    from cli_trading.market.bars import load_bars

    folder.mkdir(parents=True)
    rows = ["ts,open,high,low,close,volume"]
    for b in load_bars("BTC-USD")[BARS]:
        rows.append(f"{b.ts.isoformat()},{b.open},{b.high},{b.low},{b.close},{b.volume}")
    (folder / "BTC-USD_1h.csv").write_text("\n".join(rows) + "\n")
    return folder


def paper_fills(data_dir: Path) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    with sqlite3.connect(data_dir / "trading.db") as db:
        rows = db.execute("SELECT side, qty, price, fee FROM fills ORDER BY id").fetchall()
    return [(side, Decimal(str(q)), Decimal(str(p)), Decimal(str(f))) for side, q, p, f in rows]


def test_paper_trading_the_bars_gives_the_backtests_fills(tmp_path: Path) -> None:
    candles = history(tmp_path / "candles")
    settings = load_settings(market_data_dir=candles, **{k.lower(): v for k, v in LIMITS.items()})
    series, intervals = load_series(["BTC-USD"], candles)
    expected = [(f.side, f.qty, f.price, f.fee) for f in run(series, settings=settings, intervals=intervals).fills]
    assert len(expected) > 50 and {s for s, *_ in expected} == {"buy", "sell"}

    env = {"MARKET_DATA_DIR": str(candles), "SYMBOLS": "BTC-USD", "REPLAY_LOOP": "false", **LIMITS}
    system = start_system(tmp_path, extra_env=env, args=["--step"])
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            feed = httpx.get(system.url("market-analyst") + "/status", timeout=5).json()["feed"]
            if feed["finished"]:
                break
            time.sleep(0.5)
        assert feed["finished"], f"the replay did not finish: {feed}"
        got = paper_fills(system.data_dir)
    finally:
        system.stop()
    assert got == expected
