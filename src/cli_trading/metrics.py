"""Prometheus metrics shared by all agents. Labels are bounded: reasons, statuses, stream names
and route templates, never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("http_requests", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ADMIN_AUTH_FAILURES = Counter("admin_auth_failures", "Rejected admin authentications")
DEPENDENCY_UP = Gauge("dependency_up", "Whether a dependency answers (1) or not (0)", ["dependency"])

STREAM_PENDING = Gauge("stream_pending_count", "Messages delivered but not acked", ["stream", "group"])
DLQ_MESSAGES = Counter("trading_dlq_messages", "Messages moved to a dead-letter stream", ["stream"])
DLQ_LENGTH = Gauge("stream_dlq_length", "Entries in a dead-letter stream", ["stream"])
MESSAGES_HANDLED = Counter("stream_messages", "Stream messages handled", ["stream", "group", "result"])

HALTED = Gauge("trading_system_halted", "1 when trading is halted")
HALT_INFO = Gauge("trading_halt_info", "The halt in force (1)", ["reason", "mode"])
HALTS = Counter("trading_halts", "Halts by reason", ["reason"])
PNL_PCT = Gauge("trading_daily_pnl_pct", "Today's PnL in percent of day-start equity")
EQUITY = Gauge("trading_equity", "Equity in the quote currency")
ORDERS = Counter("trading_orders", "Orders by final status", ["status"])
DECISIONS = Counter("trading_decisions", "Runs by outcome", ["outcome"])
RISK_REJECTIONS = Counter("trading_risk_rejections", "Risk rejections by reason", ["reason"])

HOST_DISK_FREE = Gauge("host_disk_free_ratio", "Free fraction of the data folder's disk")
HOST_MEMORY_AVAILABLE = Gauge("host_memory_available_ratio", "Available fraction of host memory")

SUPERVISED_RESTARTS = Gauge(
    "supervised_process_restarts", "Restarts of a process by cli-trading up since it started", ["process"]
)
SUPERVISED_CRASH_LOOP = Gauge("supervised_process_crash_loop", "1 while the process is in a crash loop", ["process"])

# live trading: reconciliation with the exchange (the executor's desk)
RECON_DRIFT = Gauge(
    "trading_reconciliation_drift", "Drift between the exchange and the ledger, in the quote currency", ["asset"]
)
RECON_DRIFT_TOTAL = Gauge("trading_reconciliation_drift_total", "Total drift, in the quote currency")
EXCHANGE_BACKOFFS = Counter("exchange_rate_limit_backoffs", "429/418 answers from the exchange honoured")
EXCHANGE_OPEN_ORDERS = Gauge("exchange_open_orders", "Orders open at the exchange that the executor follows")
