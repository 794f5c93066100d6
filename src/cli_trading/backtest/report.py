"""A backtest's outputs: trades.csv and equity.csv (streamed while it runs), the summary as a
rich table or JSON, and report.html (`backtest/html.py`)."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.table import Table

from cli_trading.backtest.engine import Fill
from cli_trading.backtest.runner import BacktestResult

TRADE_COLUMNS = [
    "order_id",
    "time",
    "symbol",
    "side",
    "qty",
    "price",
    "fee",
    "notional",
    "strategy",
    "confidence",
    "reason",
    "trade_pnl",
]
EQUITY_COLUMNS = ["time", "equity", "buy_and_hold", "drawdown_pct"]


class CsvRecorder:
    """Writes every fill to trades.csv and every bar's equity to equity.csv as they happen, so a
    run of any length keeps nothing of them in memory. Use as a context manager."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self._files: list[IO[str]] = [
            (out / "trades.csv").open("w", newline=""),
            (out / "equity.csv").open("w", newline=""),
        ]
        self.trades, self.equity = (csv.writer(f) for f in self._files)
        self.trades.writerow(TRADE_COLUMNS)
        self.equity.writerow(EQUITY_COLUMNS)

    def on_fill(self, f: Fill, trade_pnl: float | None) -> None:
        self.trades.writerow(
            [
                f.order_id,
                f.ts.isoformat(),
                f.symbol,
                f.side,
                f.qty,
                f.price,
                f.fee,
                f.qty * f.price,
                f.strategy,
                f"{f.confidence:.4f}",
                f.reason,
                "" if trade_pnl is None else f"{trade_pnl:.2f}",
            ]
        )

    def on_bar(self, ts: datetime, equity: float, bh_equity: float, drawdown_pct: float) -> None:
        self.equity.writerow([ts.isoformat(), f"{equity:.2f}", f"{bh_equity:.2f}", f"{drawdown_pct:.4f}"])

    def close(self) -> None:
        for f in self._files:
            f.close()

    def __enter__(self) -> CsvRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _pct(x: float) -> str:
    return f"{x:+.2f}%"


def summary_rows(result: BacktestResult) -> list[tuple[str, str, str]]:
    """(label, strategy value, buy-and-hold value) rows for people."""
    m = result.metrics
    pf = "∞ (no losing trade)" if m.profit_factor is None else f"{m.profit_factor:.2f}"
    return [
        ("period", f"{(m.start or '')[:16]} → {(m.end or '')[:16]} ({m.days} days, {m.bars} bars)", ""),
        ("final equity", _money(m.final_equity), _money(m.starting_cash * (1 + m.buy_and_hold_return_pct / 100))),
        ("total return", _pct(m.total_return_pct), _pct(m.buy_and_hold_return_pct)),
        ("CAGR", _pct(m.cagr_pct), ""),
        ("volatility (annualised)", f"{m.volatility_pct:.2f}%", ""),
        ("Sharpe", f"{m.sharpe:.2f}", ""),
        ("Sortino", f"{m.sortino:.2f}", ""),
        ("max drawdown", f"{m.max_drawdown_pct:.2f}%", f"{m.buy_and_hold_max_drawdown_pct:.2f}%"),
        ("max drawdown duration", f"{m.max_drawdown_duration_days:.1f} days", ""),
        ("Calmar", f"{m.calmar:.2f}", ""),
        ("trades (round trips)", f"{m.trades} closed, {m.open_trades} open", ""),
        ("win rate", f"{m.win_rate_pct:.1f}%", ""),
        ("profit factor", pf, ""),
        ("average trade", f"{_money(m.avg_trade)} ({m.avg_trade_pct:+.2f}%)", ""),
        ("exposure time", f"{m.exposure_time_pct:.1f}%", "100.0%"),
        ("fills", str(m.fills), ""),
        ("fees paid", _money(m.fees_paid), "0.00"),
    ]


def summary_table(result: BacktestResult) -> Table:
    table = Table(title=f"Backtest: {', '.join(result.symbols)}", title_justify="left")
    table.add_column("metric")
    table.add_column("strategies", justify="right")
    table.add_column("buy and hold", justify="right", style="dim")
    for row in summary_rows(result):
        table.add_row(*row)
    c = result.counters
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(c.rejected.items())) or "none"
    halts = ", ".join(f"{k} {v}" for k, v in sorted(c.halts.items())) or "none"
    table.caption = f"{m_note(result)}\nrisk rejections: {rejected}\nhalts: {halts}"
    table.caption_justify = "left"
    return table


def m_note(result: BacktestResult) -> str:
    return f"Sharpe/Sortino/volatility: {result.metrics.annualisation}"


def write_json(result: BacktestResult, path: Path) -> dict[str, Any]:
    doc = result.summary()
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return doc
