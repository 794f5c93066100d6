"""report.html: one self-contained page (data, styles and the chart renderer inlined: it opens
offline, from a file, years later). Charts: equity against buy and hold, drawdown, and each
symbol's price with the entries and exits marked; the metrics table beside them."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from cli_trading.backtest.report import summary_rows
from cli_trading.backtest.runner import BacktestResult

MAX_MARKERS = 5000  # the chart marks at most this many fills (evenly chosen); trades.csv has all

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#24292f;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}.sub{color:#57606a;margin:0 0 16px}
.layout{display:grid;grid-template-columns:minmax(0,1fr) 360px;gap:24px}
@media(max-width:1000px){.layout{grid-template-columns:1fr}}
.plot{position:relative;width:100%}
svg.chart{display:block;font-size:11px;user-select:none}
.grid line{stroke:#eaeef2}.grid text{fill:#57606a}
.series{stroke-width:1.5}.frame{fill:none;stroke:#d0d7de}
.overlay{fill:transparent;cursor:crosshair}.cross{stroke:#57606a;stroke-dasharray:3 3;pointer-events:none}
.selection{fill:#1f6feb;fill-opacity:.12;pointer-events:none}
.marker.buy{fill:#1a7f37}.marker.sell{fill:#d1242f}
.tip{position:absolute;top:8px;display:none;background:#fff;border:1px solid #d0d7de;border-radius:4px;
padding:4px 8px;font-size:12px;pointer-events:none;box-shadow:0 1px 3px rgba(0,0,0,.1);min-width:160px}
table{border-collapse:collapse;width:100%}td{padding:3px 6px;border-bottom:1px solid #eaeef2}
td:nth-child(n+2){text-align:right;font-variant-numeric:tabular-nums}thead td{font-weight:600}
.k1{color:#1f6feb}.k2{color:#8b949e}
button{font:inherit;padding:2px 10px;margin-left:8px}.note{color:#57606a;font-size:12px}
"""


def _ms(ts: Any) -> int:
    return int(ts.timestamp() * 1000)


def report_data(result: BacktestResult) -> dict[str, Any]:
    """The page's data: chart series (already decimated), fills to mark, the metrics rows."""
    pts = result.chart
    fills = result.fills
    if len(fills) > MAX_MARKERS:
        step = len(fills) / MAX_MARKERS
        fills = [fills[int(i * step)] for i in range(MAX_MARKERS)]
    return {
        "symbols": result.symbols,
        "t": [_ms(p.ts) for p in pts],
        "equity": [round(p.equity, 2) for p in pts],
        "bh": [round(p.buy_and_hold, 2) for p in pts],
        "dd": [round(-p.drawdown_pct, 3) for p in pts],
        "prices": [[p.closes[k] for p in pts] for k in range(len(result.symbols))],
        "fills": [
            {"t": _ms(f.ts), "s": f.symbol, "side": f.side, "p": float(f.price), "q": str(f.qty)} for f in fills
        ],
        "rows": [list(r) for r in summary_rows(result)],
    }


def render(result: BacktestResult, *, title: str = "Backtest") -> str:
    data = json.dumps(report_data(result), separators=(",", ":")).replace("</", "<\\/")
    script = resources.files("cli_trading.backtest").joinpath("assets/report.js").read_text()
    m = result.metrics
    sub = (
        f"{html.escape(', '.join(result.symbols))} · {html.escape((m.start or '')[:10])} → "
        f"{html.escape((m.end or '')[:10])} · starting cash {m.starting_cash:,.2f}"
    )
    c = result.counters
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(c.rejected.items())) or "none"
    halts = ", ".join(f"{k}: {v}" for k, v in sorted(c.halts.items())) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1><p class="sub">{sub}</p>
<div class="layout"><div>
<h2>Equity (<span class="k1">■</span> strategies) against buy and hold (<span class="k2">■</span>)
<button id="reset" type="button">reset zoom</button></h2>
<p class="note">Drag across a chart to zoom every chart; double-click to see the whole run.</p>
<div class="plot" id="equity"></div>
<h2>Drawdown (%)</h2><div class="plot" id="drawdown"></div>
<div id="prices"></div>
</div><div>
<h2>Metrics</h2>
<table id="metrics"><thead><tr><td></td><td>strategies</td><td>buy and hold</td></tr></thead><tbody></tbody></table>
<p class="note">Sharpe, Sortino and volatility: {html.escape(m.annualisation)}.<br>
Risk rejections: {html.escape(rejected)}.<br>Automatic halts: {html.escape(halts)}.<br>
Charts show at most {len(result.chart)} points; the metrics use every bar.</p>
</div></div>
<script type="application/json" id="bt-data">{data}</script>
<script>{script}</script>
</body></html>
"""


def write_html(result: BacktestResult, path: Path, *, title: str = "Backtest") -> None:
    path.write_text(render(result, title=title))
