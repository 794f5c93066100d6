"""A deterministic overview document (what GET /admin/overview answers) for the console's unit
and snapshot tests: fixed times, every panel filled."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 11, 30, 3, 12, 40, tzinfo=UTC)
AGENTS = ["orchestrator", "portfolio-manager", "market-analyst", "risk-manager", "trade-executor",
          "notification-manager", "parameter-optimizer"]
STREAMS = ["orchestrator.commands", "analysis.signals", "risk.requests", "risk.responses", "exec.orders",
           "exec.status", "notify.events", "opt.requests", "opt.results", "market.bars"]


def trading() -> dict[str, Any]:
    curve = [f"{10000 + (i % 17) * 6 - (i % 5) * 9 + i * 2:.2f}" for i in range(90)]
    halt = {"halted": False, "haltReason": None, "haltMode": None, "haltedAt": None, "haltedBy": None,
            "haltNote": None}
    return {
        "asOf": "2026-11-30T03:12:40Z",
        "you": "tok:418976e4817c",
        "trading": {"mode": "paper", "symbols": ["BTC-USD", "ETH-USD"], **halt},
        "pnl": {
            "date": "2026-11-30", "startEquity": "10000", "equity": "10184.52", "cash": "7365.10",
            "realized": "142.18", "unrealized": "51.96", "fees": "9.62", "exposure": "2819.42",
            "percent": "1.8452", "dailyTargetPct": "3", "dailyLossLimitPct": "5", **halt,
            "positions": [
                {"symbol": "BTC-USD", "qty": "0.4", "avgCost": "4012.50", "mark": "4118.40", "value": "1647.36",
                 "unrealized": "42.36"},
                {"symbol": "ETH-USD", "qty": "3.2", "avgCost": "363.27", "mark": "366.27", "value": "1172.06",
                 "unrealized": "9.60"},
            ],
            "asOf": "2026-11-30T03:12:40Z",
            "equityCurve": curve,
        },
        "agents": [
            {"agent": a, "state": "healthy", "failing": [], "pid": 1000 + i, "uptimeSeconds": 3600 + i * 61,
             "restarts": 0, "supervisor": "running", "crashLoop": False, "pending": i % 2, "lag": 0,
             "lastError": None}
            for i, a in enumerate(AGENTS)
        ],
        "streams": [
            {"stream": s, "length": 120 - i * 7, "groups": [{"name": "g", "pending": i % 3, "consumers": 1, "lag": 0}],
             "expectedGroups": ["g"], "dlq": f"{s}.dlq", "dlqLength": 2 if s == "notify.events" else 0}
            for i, s in enumerate(STREAMS)
        ],
        "incidents": {"open": [
            {"id": 7, "title": "Exchange latency above 2 s", "severity": "P2", "status": "INVESTIGATING",
             "commander": None, "openedAt": "2026-11-30T02:58:10Z", "acknowledgedAt": None},
        ]},
        "checklist": {"ok": False, "passed": 9, "total": 10,
                      "items": [{"key": "backups", "item": "backup recent", "ok": False, "evidence": "none"}]},
        "activity": [
            {"kind": "fill", "ts": "2026-11-30T03:12:31Z", "id": "r-3", "summary": "filled buy 0.1 BTC-USD",
             "record": {"requestId": "r-3", "outcome": "filled", "steps": ["risk", "order", "filled"]}},
            {"kind": "rejection", "ts": "2026-11-30T03:11:02Z", "id": "r-2",
             "summary": "rejected buy 0.2 ETH-USD: max_position", "record": {"requestId": "r-2"}},
            {"kind": "run", "ts": "2026-11-30T03:10:40Z", "id": "r-1", "summary": "hold BTC-USD: no signal",
             "record": {"requestId": "r-1"}},
        ],
        "logs": [
            {"ts": f"2026-11-30T03:12:{10 + i:02d}Z", "agent": AGENTS[i % 7], "level": "warning" if i == 4 else "info",
             "event": f"handled batch {i}", "extra": ""}
            for i in range(12)
        ],
    }


def halted() -> dict[str, Any]:
    doc = copy.deepcopy(trading())
    halt = {"halted": True, "haltReason": "security_incident", "haltMode": "halt",
            "haltedAt": "2026-11-30T03:07:12Z", "haltedBy": "tok:418976e4817c",
            "haltNote": "API key possibly leaked; rotating"}
    doc["trading"].update(halt)
    doc["pnl"].update(halt)
    doc["agents"][4].update(state="down", uptimeSeconds=None, restarts=2, supervisor="exited, restarting in 1.0s",
                            lastError={"ts": "2026-11-30T03:07:09Z", "event": "exchange adapter crashed", "extra": ""})
    doc["activity"].insert(0, {"kind": "halt", "ts": "2026-11-30T03:07:12Z", "id": "halt-4",
                               "summary": "halt security_incident (halt) by tok:418976e4817c", "record": {}})
    return doc
