"""Incident commands (`cli-trading incident open|ack|update|resolve|list|show|postmortem`) and the
runbook's Recovery Validation Checklist (`cli-trading verify-recovery`). Each is a small call to
the notification manager's HTTP API, which sends the matching runbook template."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from cli_trading.cli.client import NOT_RUNNING, Target, call, console, err, print_json, target
from cli_trading.contracts import AGENTS
from cli_trading.notify import recovery

NM = "notification-manager"
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
By = Annotated[str | None, typer.Option("--by", help="your name for the timeline (default: $USER)")]
Id = Annotated[int, typer.Argument(help="incident id (see `cli-trading incident list`)")]

incident_app = typer.Typer(
    help="Incidents: open, acknowledge, update, resolve, list, show, post-mortem.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
    app.command("verify-recovery")(verify_recovery)


def _by(by: str | None) -> str:
    try:
        return by or getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _summary(i: dict[str, Any]) -> None:
    console.print(
        f"[bold]#{i['id']}[/bold] {i['severity']} {i['category']} [bold]{i['status']}[/bold] — {i['title']}"
        f"\n  commander {i.get('commander') or '-'} | opened {i['openedAt']} | acknowledged "
        f"{i.get('acknowledgedAt') or 'not yet'} | impact: {i.get('impact') or '-'}"
    )


@incident_app.command("open")
def open_(
    title: Annotated[str, typer.Option(help="brief description (the alert's Issue)")],
    severity: Annotated[str, typer.Option(help="P0, P1, P2 or P3 (the runbook's classification)")] = "P2",
    category: Annotated[str, typer.Option(help="trading, security or infrastructure")] = "trading",
    impact: Annotated[str | None, typer.Option(help="business impact")] = None,
    commander: Annotated[str | None, typer.Option(help="incident commander")] = None,
    service: Annotated[list[str] | None, typer.Option(help="affected service (repeatable)")] = None,
    by: By = None,
    json_: Json = False,
) -> None:
    """Open an incident by hand and send the initial alert (🚨 INCIDENT ALERT 🚨)."""
    body = {
        "title": title,
        "severity": severity.upper(),
        "category": category,
        "impact": impact,
        "commander": commander,
        "services": service or [],
        "by": _by(by),
    }
    i = call(target(), "POST", "/admin/incidents", agent=NM, body=body)
    print_json(i) if json_ else _summary(i)


@incident_app.command()
def ack(
    incident_id: Id,
    commander: Annotated[str | None, typer.Option(help="who takes command")] = None,
    by: By = None,
    json_: Json = False,
) -> None:
    """Acknowledge an incident (stops its escalation); you become its commander unless --commander."""
    i = call(
        target(), "POST", f"/admin/incidents/{incident_id}/ack", agent=NM, body={"by": _by(by), "commander": commander}
    )
    print_json(i) if json_ else _summary(i)


@incident_app.command()
def update(
    incident_id: Id,
    progress: Annotated[str, typer.Option(help="what has been done")],
    next_steps: Annotated[str | None, typer.Option("--next", help="what will be done next")] = None,
    status: Annotated[str | None, typer.Option(help="INVESTIGATING or MITIGATING")] = None,
    eta: Annotated[str | None, typer.Option(help="expected resolution or next update")] = None,
    impact: Annotated[str | None, typer.Option(help="revised business impact")] = None,
    by: By = None,
    json_: Json = False,
) -> None:
    """Post a status update (📊 INCIDENT UPDATE 📊)."""
    body = {
        "progress": progress,
        "nextSteps": next_steps,
        "status": status.upper() if status else None,
        "eta": eta,
        "impact": impact,
        "by": _by(by),
    }
    i = call(target(), "POST", f"/admin/incidents/{incident_id}/update", agent=NM, body=body)
    print_json(i) if json_ else _summary(i)


@incident_app.command()
def resolve(
    incident_id: Id,
    root_cause: Annotated[str, typer.Option(help="brief explanation of the root cause")],
    resolution: Annotated[str, typer.Option(help="what was done")],
    by: By = None,
    json_: Json = False,
) -> None:
    """Resolve an incident (✅ INCIDENT RESOLVED ✅); then run verify-recovery and the post-mortem."""
    i = call(
        target(),
        "POST",
        f"/admin/incidents/{incident_id}/resolve",
        agent=NM,
        body={"rootCause": root_cause, "resolution": resolution, "by": _by(by)},
    )
    print_json(i) if json_ else _summary(i)
    if not json_:
        console.print(f"next: cli-trading verify-recovery; cli-trading incident postmortem {incident_id}")


@incident_app.command("list")
def list_(
    state: Annotated[str, typer.Option(help="all, open or resolved")] = "all",
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
    json_: Json = False,
) -> None:
    """Incidents, newest first."""
    found = call(target(), "GET", "/incidents", agent=NM, params={"state": state, "limit": limit})
    if json_:
        print_json(found)
        return
    table = Table(title="incidents")
    for col in ("id", "sev", "category", "status", "opened", "commander", "title"):
        table.add_column(col)
    for i in found["incidents"]:
        color = {"P0": "red", "P1": "yellow"}.get(i["severity"], "white")
        table.add_row(
            str(i["id"]),
            f"[{color}]{i['severity']}[/{color}]",
            i["category"],
            i["status"],
            i["openedAt"],
            i.get("commander") or "-",
            i["title"],
        )
    console.print(table)


@incident_app.command()
def show(incident_id: Id, json_: Json = False) -> None:
    """An incident with its timeline and durations."""
    i = call(target(), "GET", f"/incidents/{incident_id}", agent=NM)
    if json_:
        print_json(i)
        return
    _summary(i)
    for e in i["timeline"]:
        console.print(f"  {e['ts']}  {e['kind']:<11} {e.get('actor') or '-':<20} {e['message']}")


@incident_app.command()
def postmortem(
    incident_id: Id, output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file")] = None
) -> None:
    """The runbook's post-mortem template as Markdown, filled in from the incident's records."""
    t = target()
    try:
        r = httpx.get(f"{t.url(NM)}/incidents/{incident_id}/postmortem", timeout=t.timeout)
    except httpx.HTTPError as exc:
        err.print(f"[red]{NM} is not reachable at {t.url(NM)}[/red]: is cli-trading running?")
        raise typer.Exit(NOT_RUNNING) from exc
    if r.status_code != 200:
        err.print(f"[red]{r.status_code}: {r.text[:300]}[/red]")
        raise typer.Exit(1)
    if output:
        output.write_text(r.text)
        console.print(f"post-mortem draft written to {output}")
    else:
        typer.echo(r.text)


def _local_checklist(t: Target, why: str) -> dict[str, Any]:
    """The notification manager is down: judge what can be judged from here."""
    facts = recovery.Facts(streams_error=f"{NM} not reachable ({why})", incidents_known=False)
    for agent in AGENTS:
        for path in ("/health", "/status"):
            try:
                code = httpx.get(t.url(agent) + path, timeout=3).status_code
            except httpx.HTTPError:
                code = 0
            if path == "/health":
                facts.health[agent] = {"code": code, "body": None, "seconds": 0}
            else:
                facts.status[agent] = code
    return {**recovery.evaluate(facts), "running": any(h["code"] for h in facts.health.values())}


def verify_recovery(
    json_: Json = False,
    documented: Annotated[bool, typer.Option("--documented", help="confirm the documentation was updated")] = False,
) -> None:
    """The runbook's Recovery Validation Checklist, each item checked by the system with its
    evidence. Exit 0 only when every item passes."""
    t = target()
    try:
        r = httpx.get(f"{t.url(NM)}/recovery/checklist", params={"documented": documented}, timeout=30)
        result = r.json() if r.status_code == 200 else _local_checklist(t, f"HTTP {r.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        result = _local_checklist(t, type(exc).__name__)
    if json_:
        print_json(result)
    else:
        console.print("[bold]Recovery Validation Checklist[/bold]")
        for item in result["items"]:
            mark = "[green]\\[x][/green]" if item["ok"] else "[red]\\[ ][/red]"
            manual = " (manual)" if item["check"] == "manual" else ""
            console.print(f"- {mark} {item['item']}{manual}\n      {item['evidence']}")
        color = "green" if result["ok"] else "red"
        console.print(f"[{color}]{result['passed']}/{result['total']} passed[/{color}]")
    if result.get("running") is False:
        raise typer.Exit(NOT_RUNNING)
    raise typer.Exit(0 if result["ok"] else 1)
