"""Operator commands that mirror the runbook: status, pnl, halt, unhalt, streams, audit, logs,
config. Each is a small function over the same HTTP API the runbook's curl commands use."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from cli_trading.cli.client import NOT_RUNNING, Target, call, console, err, print_json, target
from cli_trading.contracts import AGENTS

Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Token = Annotated[str | None, typer.Option("--token", help="admin token (default: ADMIN_TOKEN / ADMIN_TOKEN_FILE)")]  # noqa: UP007

streams_app = typer.Typer(help="Redis stream backlog and dead-letter queues.", invoke_without_command=True)
audit_app = typer.Typer(help="The audit trail.")
config_app = typer.Typer(help="Settings in force.")


def register(app: typer.Typer) -> None:
    for fn in (status, pnl, halt, unhalt, logs):
        app.command()(fn)
    app.add_typer(streams_app, name="streams")
    app.add_typer(audit_app, name="audit")
    app.add_typer(config_app, name="config")


def _health(t: Target) -> dict[str, Any]:
    out = {}
    for agent in AGENTS:
        try:
            r = httpx.get(t.url(agent) + "/health", timeout=2)
            out[agent] = {
                "url": t.url(agent),
                "status": "healthy" if r.status_code == 200 else "unhealthy",
                "checks": r.json().get("checks"),
            }
        except (httpx.HTTPError, ValueError):
            out[agent] = {"url": t.url(agent), "status": "down"}
    return out


def status(json_: Json = False, token: Token = None) -> None:
    """Every agent's health, the halt state, PnL and stream backlog on one screen.
    Exit 0 when all is well, 1 when something needs attention, 3 when nothing answers."""
    t = target(token)
    health = _health(t)
    if all(h["status"] == "down" for h in health.values()):
        err.print("[red]no agent answers: cli-trading is not running (start it with `cli-trading up`)[/red]")
        raise typer.Exit(NOT_RUNNING)
    pnl_ = call(t, "GET", "/pnl/status") if health["orchestrator"]["status"] != "down" else {}
    streams = _streams_or_none(t)
    sup = ((health["orchestrator"].get("checks") or {}).get("supervision") or {}).get("processes") or {}
    doc = {"agents": health, "pnl": pnl_, "streams": streams, "supervision": sup or None}
    looping = [n for n, p in sup.items() if p.get("crashLoop")]
    bad = any(h["status"] != "healthy" for h in health.values()) or pnl_.get("halted") or looping
    if json_:
        print_json(doc)
        raise typer.Exit(1 if bad else 0)
    table = Table(title="agents")
    for col in ("agent", "url", "state", "restarts"):
        table.add_column(col)
    for name, h in health.items():
        color = {"healthy": "green", "unhealthy": "yellow"}.get(h["status"], "red")
        p = sup.get(name) or {}
        state = h["status"] if p.get("state") in (None, "running") else f"{h['status']} ({p['state']})"
        color = "red" if p.get("crashLoop") else color
        table.add_row(name, h["url"], f"[{color}]{state}[/{color}]", str(p.get("restarts", "")))
    if "redis" in sup:
        p = sup["redis"]
        table.add_row("redis (embedded)", "", p["state"], str(p.get("restarts", "")))
    console.print(table)
    if looping:
        err.print(f"[red]crash loop: {', '.join(looping)} (cli-trading up keeps restarting them; see logs/)[/red]")
    if pnl_:
        _print_pnl(pnl_)
        _print_reconciliation(pnl_.get("reconciliation"))
    if streams is not None:
        _print_streams(streams)
    raise typer.Exit(1 if bad else 0)


def _print_reconciliation(rec: dict[str, Any] | None) -> None:
    """Live mode: how far the exchange is from the ledger (docs/live-trading.md)."""
    if not rec:
        return
    drift = rec.get("driftQuote", "0")
    color = "green" if not rec.get("assets") and not rec.get("unknownOrders") else "yellow"
    console.print(f"reconciliation  [{color}]drift {drift} {rec.get('quote', '')}[/{color}] at {rec.get('ts', '?')}")
    for a in rec.get("assets", []):
        console.print(f"  {a['asset']}: exchange {a['exchange']} vs ledger {a['expected']} ({a['valueQuote']})")
    if rec.get("unknownOrders"):
        console.print(f"  open orders unknown to the ledger: {', '.join(rec['unknownOrders'])}")
    if rec.get("adoptedOrders"):  # EXCHANGE_UNKNOWN_ORDERS=adopt: ours from now on
        console.print(f"  open orders adopted by this check: {', '.join(rec['adoptedOrders'])}")


def _streams_or_none(t: Target) -> list[dict[str, Any]] | None:
    if not t.token:
        return None
    try:
        r = httpx.get(t.url() + "/admin/streams", headers={"X-Admin-Token": t.token}, timeout=5)
        return r.json()["streams"] if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _print_pnl(p: dict[str, Any]) -> None:
    halt = (
        f"[red]HALTED[/red] {p.get('haltReason')} ({p.get('haltMode')}) since {p.get('haltedAt')} by "
        f"{p.get('haltedBy')}"
        if p.get("halted")
        else "[green]trading[/green]"
    )
    console.print(
        f"{halt}\nPnL {p['date']}: {p['percent']}% | equity {p['equity']} (start {p['startEquity']}) | "
        f"realized {p['realized']} unrealized {p['unrealized']} fees {p['fees']} | "
        f"target +{p['dailyTargetPct']}% loss limit -{p['dailyLossLimitPct']}%"
    )


def _print_streams(streams: list[dict[str, Any]]) -> None:
    table = Table(title="streams")
    for col in ("stream", "length", "group: pending", "dlq"):
        table.add_column(col)
    for s in streams:
        groups = ", ".join(f"{g['name']}: {g['pending']}" for g in s["groups"])
        dlq = f"[red]{s['dlqLength']}[/red]" if s["dlqLength"] else "0"
        table.add_row(s["stream"], str(s["length"]), groups, dlq)
    console.print(table)


def pnl(json_: Json = False) -> None:
    """Today's PnL and the halt state (GET /pnl/status)."""
    p = call(target(), "GET", "/pnl/status")
    print_json(p) if json_ else _print_pnl(p)


def halt(
    reason: Annotated[str, typer.Option(help="manual, emergency_stop, security_incident, … or your own")] = "manual",
    mode: Annotated[str, typer.Option(help="halt | reduce_only | flatten")] = "halt",
    note: Annotated[str | None, typer.Option(help="why, for the halt ledger")] = None,  # noqa: UP007
    json_: Json = False,
    token: Token = None,
) -> None:
    """Stop trading now. Once this returns, no new order reaches the exchange."""
    res = call(target(token), "POST", "/admin/orchestrate/halt", body={"reason": reason, "mode": mode, "note": note})
    if json_:
        return print_json(res)
    console.print(
        f"[red]halted[/red]: {res['haltReason']} ({res['haltMode']}); "
        f"{len(res.get('inFlight', []))} order(s) were already at the exchange adapter"
    )


def unhalt(
    force: Annotated[bool, typer.Option(help="resume even while the daily loss limit is breached")] = False,
    note: Annotated[str | None, typer.Option(help="why, for the halt ledger")] = None,  # noqa: UP007
    json_: Json = False,
    token: Token = None,
) -> None:
    """Resume trading (refused with exit 1 while the loss limit is breached, unless --force)."""
    res = call(target(token), "POST", "/admin/orchestrate/unhalt", body={"force": force, "note": note})
    print_json(res) if json_ else console.print("[green]trading resumed[/green]")


@streams_app.callback()
def streams(ctx: typer.Context, json_: Json = False, token: Token = None) -> None:
    """Every stream with its length, groups, pending counts and DLQ length."""
    if ctx.invoked_subcommand:
        return
    res = call(target(token), "GET", "/admin/streams")
    print_json(res) if json_ else _print_streams(res["streams"])


@streams_app.command("pending")
def streams_pending(
    stream: str = "notify.events", group: str = "notify", json_: Json = False, token: Token = None
) -> None:
    """XPENDING summary of one group."""
    res = call(target(token), "GET", "/admin/streams/pending", params={"stream": stream, "group": group})
    if json_:
        return print_json(res)
    console.print(
        f"{stream}/{group}: {res['count']} pending, oldest idle {res['oldestIdleMs']} ms, "
        f"per consumer {res['consumers']}"
    )


@streams_app.command("dlq")
def streams_dlq(stream: str = "notify.events.dlq", count: int = 50, json_: Json = False, token: Token = None) -> None:
    """Dead-lettered messages with their error."""
    res = call(target(token), "GET", "/admin/streams/dlq", params={"stream": stream, "count": count})
    if json_:
        return print_json(res)
    table = Table(title=f"{stream} ({res['length']} entries)")
    for col in ("id", "from", "failures", "error"):
        table.add_column(col)
    for e in res["entries"]:
        table.add_row(
            e["id"], f"{e.get('originalStream')}/{e.get('group')}", str(e.get("failures")), str(e.get("error"))[:80]
        )
    console.print(table)


@streams_app.command("requeue")
def streams_requeue(
    entry_id: Annotated[str | None, typer.Argument(help="DLQ entry id")] = None,  # noqa: UP007
    all_: Annotated[bool, typer.Option("--all", help="requeue every entry")] = False,
    stream: str = "notify.events.dlq",
    json_: Json = False,
    token: Token = None,
) -> None:
    """Put dead-lettered messages back on their original stream."""
    if not entry_id and not all_:
        err.print("[red]give an entry id or --all[/red]")
        raise typer.Exit(2)
    res = call(
        target(token), "POST", "/admin/streams/dlq/requeue", body={"dlqStream": stream, "id": entry_id, "all": all_}
    )
    print_json(res) if json_ else console.print(f"requeued {res['count']} message(s)")


@audit_app.command("tail")
def audit_tail(limit: int = 30, action: str | None = None, json_: Json = False, token: Token = None) -> None:  # noqa: UP007
    """The latest audit events (who did what, from where, with what result)."""
    res = call(target(token), "GET", "/admin/audit", params={"limit": limit, **({"action": action} if action else {})})
    if json_:
        return print_json(res)
    table = Table(title="audit")
    for col in ("time", "agent", "action", "actor", "from", "result", "requestId"):
        table.add_column(col)
    for e in reversed(res["events"]):
        table.add_row(
            e["ts"][:19],
            e["agent"],
            e["action"],
            e.get("actor") or "",
            e.get("source") or "",
            e.get("result") or "",
            (e.get("requestId") or "")[:12],
        )
    console.print(table)


def logs(
    agent: Annotated[str, typer.Argument(help="agent name, or admin-access")],
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    lines: int = 50,
    data_dir: Annotated[Path, typer.Option(envvar="DATA_DIR")] = Path("cli-trading-data"),
) -> None:
    """Show an agent's JSON log from the logs folder (LOG_DIR or <data-dir>/logs)."""
    import os

    folder = Path(os.environ.get("LOG_DIR") or data_dir / "logs")
    path = folder / f"{agent}.log"
    if not path.exists():
        err.print(f"[red]no log file {path}[/red] (agents: {', '.join(AGENTS)}, or admin-access)")
        raise typer.Exit(1)
    with path.open() as fh:
        for line in fh.readlines()[-lines:]:
            typer.echo(line.rstrip())
        while follow:
            line = fh.readline()
            if line:
                typer.echo(line.rstrip())
            else:
                time.sleep(0.3)


@config_app.command("show")
def config_show(json_: Json = False) -> None:
    """The settings this machine's environment gives, secrets redacted."""
    from cli_trading.config import ConfigError, load_settings, redact_url

    try:
        s = load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    doc = json.loads(s.model_dump_json())
    for key in list(doc):
        if any(w in key for w in ("token", "secret", "api_key", "password")) and doc[key] and not key.endswith("_file"):
            doc[key] = "***"
    for key in ("redis_url", "database_url"):
        if doc.get(key):
            doc[key] = redact_url(doc[key])
    if json_:
        return print_json(doc)
    table = Table(title="settings")
    table.add_column("setting")
    table.add_column("value")
    for k, v in sorted(doc.items()):
        table.add_row(k.upper(), str(v))
    console.print(table)
