#!/usr/bin/env python3
"""The table of bench/halt_figures.sh: one row per deployment and path the halts took, p50/p95/p99
under the saturating closed loop and at 100 runs/s, and each p99 against its target — direct:
≤ 30 ms saturating, ≤ 10 ms at 100 runs/s; TLS and the edge: at most 5 ms more than direct on the
same database (the edge's direct is the one measured in the same run, halt for halt). A TLS
deployment's rows include curl's own floor: a new TLS connection to openssl s_server, and each TLS
halt's time once curl's connection was up (without curl's TLS handshake)."""

from __future__ import annotations

import json
import sys
from typing import Any

DIRECT_P99 = {"sat": 30.0, "rate": 10.0}
EXTRA_MS = 5.0


FLOOR = "curl's TLS floor (openssl s_server)"


def via(row: dict[str, Any]) -> str:
    if "probe" in row:
        return FLOOR
    if row["mode"] == "edge":
        return "edge" if ":8443" in row["haltUrl"] or row["haltUrl"].startswith("https") else "direct, same run"
    return row["mode"]


def load(row: dict[str, Any]) -> str:
    return "rate" if row["load_kind"].startswith("open loop") else "sat"


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if "probe" in row:
        p50, p95, p99 = row["ms_p50_p95_p99"]
        return f"{p50} / {p95} / {p99}"
    p50, p95, p99 = row["halt_response_ms_p50_p95_p99"]
    runs = (row.get("load") or {}).get("completed_per_s")
    unsettled = row["in_flight_lists"] - row["in_flight_settled"]
    extra = f" ({runs:g} runs/s)" if runs is not None and row["load_kind"].startswith("closed") else ""
    warn = f", {unsettled} in-flight list(s) not settled" if unsettled else ""
    return f"{p50} / {p95} / **{p99}**{extra}{warn}{once_connected(row)}"


def once_connected(row: dict[str, Any]) -> str:
    """Over TLS: the same halts from the moment curl's TLS connection was up (its handshake, the
    part the floor row measures, left out)."""
    after = row.get("once_connected_ms_p50_p95_p99")
    if not after or not row["haltUrl"].startswith("https"):
        return ""
    return f"; once connected {after[0]} / {after[1]} / {after[2]}"


def verdict(rows: dict[tuple[str, str, str, str], dict[str, Any]], key: tuple[str, str, str], kind: str) -> str:
    db, mode, path = key
    row = rows.get((db, mode, path, kind))
    if row is None:
        return "—"
    if path == FLOOR:
        return "curl alone: no server does less"
    p99 = row["halt_response_ms_p50_p95_p99"][2]
    if path in ("direct", "direct, same run"):
        return f"≤ {DIRECT_P99[kind]:g}: {'met' if p99 <= DIRECT_P99[kind] else 'NOT met'}"
    same_run = (db, "edge", "direct, same run", kind)
    base = rows.get(same_run) if path == "edge" else rows.get((db, "direct", "direct", kind))
    if base is None:
        return "no direct figure to compare"
    extra = p99 - base["halt_response_ms_p50_p95_p99"][2]
    floor = rows.get((db, mode, FLOOR, kind))
    of_which = f" (curl's TLS floor p99 {floor['ms_p50_p95_p99'][2]})" if floor else ""
    return f"{extra:+.1f} ms over direct{of_which}: {'met' if extra <= EXTRA_MS else 'NOT met'}"


def main(path: str) -> None:
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        if line.strip():
            r = json.loads(line)
            rows[(r["db"], r["mode"], via(r), load(r))] = r
    keys = list(dict.fromkeys(k[:3] for k in rows))
    print("| database (Redis) | deployment | halts | p50 / p95 / p99 ms, saturating | target | "
          "p50 / p95 / p99 ms, 100 runs/s | target |")
    print("|---|---|---|---|---|---|---|")
    for db, mode, path in keys:
        sat, rate = rows.get((db, mode, path, "sat")), rows.get((db, mode, path, "rate"))
        redis = (sat or rate or {}).get("redis", "?")
        print(f"| {db} ({redis}) | {mode} | {path} | {cell(sat)} | {verdict(rows, (db, mode, path), 'sat')} | "
              f"{cell(rate)} | {verdict(rows, (db, mode, path), 'rate')} |")


if __name__ == "__main__":
    main(sys.argv[1])
