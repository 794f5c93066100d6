"""Redis keys live trading shares between agents (the executor writes them)."""

MARKETS_KEY = "cli-trading:exchange:markets"  # JSON {symbol: MarketRules.to_json()}: the risk manager
BALANCES_KEY = "cli-trading:exchange:balances"  # JSON {asset: total held}: the risk manager
RECON_KEY = "cli-trading:exchange:reconciliation"  # JSON report: /pnl/status, `cli-trading status`
