"""Operations commands the runbook's scripts wrap: `health`, `backup …`, `security-audit`,
`secrets …`. The work is in `cli_trading.ops`; these functions parse, call, print, exit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from cli_trading.cli.client import console, err, print_json
from cli_trading.ops.locate import Located, locate

Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Ref = Annotated[str | None, typer.Argument(help="backup id, or latest (default)")]

backup_app = typer.Typer(help="Backups: backup | restore [ID|latest] | list | verify [ID].", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets: init | rotate [--force] | status.", no_args_is_help=True)
COLORS = {"ok": "green", "warning": "yellow", "critical": "red", "high": "red", "medium": "yellow",
          "low": "blue", "info": "dim"}


def register(app: typer.Typer) -> None:
    app.command()(health)
    app.command("security-audit")(security_audit)
    app.add_typer(backup_app, name="backup")
    app.add_typer(secrets_app, name="secrets")


# -- health ---------------------------------------------------------------------------------
def health(
    json_: Json = False,
    continuous: Annotated[bool, typer.Option("--continuous", help="refresh until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between refreshes")] = 5.0,
) -> None:
    """Every agent, Redis, the database, streams, halt, PnL, host and backups: ok / warning /
    critical with evidence. Exit 0 all ok, 1 warnings, 2 anything critical."""
    from cli_trading.ops.health import run_checks

    if continuous:
        raise typer.Exit(_continuous(run_checks, interval))
    doc = run_checks(locate())
    print_json(doc) if json_ else console.print(_health_table(doc))
    raise typer.Exit(doc["exitCode"])


def _health_table(doc: dict[str, Any]) -> Table:
    color = COLORS[doc["status"]]
    t = Table(title=f"cli-trading health: [{color}]{doc['status'].upper()}[/{color}]  ({doc['checkedAt']})",
              caption=f"data {doc['system']['dataDir']} · redis {doc['system']['redis']} · "
                      f"db {doc['system']['database']}")
    for col in ("check", "status", "evidence"):
        t.add_column(col)
    for c in doc["checks"]:
        col = COLORS[c["status"]]
        t.add_row(c["name"], f"[{col}]{c['status']}[/{col}]", c["summary"])
    return t


def _continuous(run_checks: Any, interval: float) -> int:
    """Redraw in place on a terminal; print one table per round into a pipe or a log."""
    code = 0
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live:
            live.start()
        while True:
            doc = run_checks(locate())
            code = doc["exitCode"]
            if live:
                live.update(_health_table(doc), refresh=True)
            else:
                console.print(_health_table(doc))
            time.sleep(max(0.5, interval))
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            live.stop()
    console.print("stopped")
    return code


# -- backup ---------------------------------------------------------------------------------
@backup_app.command("backup")
def backup_create(
    keep: Annotated[int | None, typer.Option(help="backups to keep (BACKUP_KEEP, default 14; 0 = all)")] = None,
    skip_redis: Annotated[bool, typer.Option("--skip-redis", help="back up the database only")] = False,
    json_: Json = False,
) -> None:
    """Back up the database, Redis and the configuration into a timestamped folder."""
    from cli_trading.ops import backup as bk

    loc = _loc()
    try:
        info = bk.create(loc, keep=keep, skip_redis=skip_redis)
    except Exception as exc:  # noqa: BLE001 - any failure: say what, exit 1, nothing half-written
        err.print(f"[red]backup failed: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from exc
    if json_:
        return print_json({"id": info.id, "path": str(info.path), **info.manifest})
    led = info.manifest["ledger"]
    console.print(f"[green]backup {info.id}[/green] → {info.path} ({_size(info.size)}): "
                  f"{led['fills']} fills, equity {led['equity']}, redis keys "
                  f"{(info.manifest['redis'] or {}).get('keys', 'not included')}")


@backup_app.command("list")
def backup_list(json_: Json = False) -> None:
    """Backups with size, age and verification state."""
    from cli_trading.ops import backup as bk

    loc = _loc()
    found = bk.all_backups(loc.backup_root)
    rows = [{"id": b.id, "path": str(b.path), "createdAt": b.manifest["createdAt"],
             "ageHours": round(b.age_s() / 3600, 2), "bytes": b.size, "database": b.manifest["database"]["kind"],
             "fills": b.manifest["ledger"]["fills"], "verification": b.verification} for b in found]
    if json_:
        return print_json({"backupDir": str(loc.backup_root), "backups": rows})
    if not rows:
        console.print(f"no backups in {loc.backup_root}")
        return
    t = Table(title=f"backups in {loc.backup_root}")
    for col in ("id", "age", "size", "database", "fills", "verified"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], f"{r['ageHours']:.1f} h", _size(r["bytes"]), r["database"], str(r["fills"]), _ver(r))
    console.print(t)


def _ver(row: dict[str, Any]) -> str:
    v = row["verification"]
    if not v:
        return "never"
    return f"[green]ok[/green] {v['verifiedAt'][:19]} ({v['method']})" if v["ok"] else \
        f"[red]FAILED[/red] {v['verifiedAt'][:19]}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@backup_app.command("verify")
def backup_verify(ref: Ref = None, json_: Json = False) -> None:
    """Restore into a scratch database and check it, without touching the live system."""
    from cli_trading.ops import restore as rs

    try:
        res = rs.verify(_loc(), ref)
    except Exception as exc:  # noqa: BLE001 - unreadable backup, no scratch database, …
        err.print(f"[red]verify failed: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from exc
    if json_:
        print_json(res)
    elif res["ok"]:
        console.print(f"[green]backup {res['id']} verified[/green]: checksums, scratch restore, ledger")
    else:
        console.print(f"[red]backup {res['id']} FAILED verification[/red]: " + "; ".join(res["problems"]))
    raise typer.Exit(0 if res["ok"] else 1)


@backup_app.command("restore")
def backup_restore(
    ref: Ref = None,
    skip_redis: Annotated[bool, typer.Option("--skip-redis", help="restore the database only")] = False,
    json_: Json = False,
) -> None:
    """Halt, restore the database and Redis, check the ledger, leave trading halted."""
    from cli_trading.ops import restore as rs
    from cli_trading.ops.backup import BackupError

    say = (lambda _: None) if json_ else console.print
    try:
        res = rs.restore(_loc(), ref, say, skip_redis=skip_redis)
    except (BackupError, rs.RestoreRefused) as exc:
        err.print(f"[red]restore refused: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # noqa: BLE001 - mid-way failure: say where things stand
        err.print(f"[red]restore FAILED: {type(exc).__name__}: {str(exc)[:500]}[/red]\nTrading stays halted. "
                  "Check the database, then retry the restore or another backup.", soft_wrap=True)
        raise typer.Exit(2) from exc
    if json_:
        print_json(res)
    ok = not res["problems"]
    if not json_:
        console.print(("[green]restored[/green]" if ok else "[red]restored with problems[/red]")
                      + f" from {res['id']}; trading is HALTED (system_error, restore): check, then "
                      "`cli-trading unhalt --note 'restore checked'`")
    raise typer.Exit(0 if ok else 1)


# -- security audit -------------------------------------------------------------------------
def security_audit(
    report: Annotated[bool, typer.Option("--report", help="also write an evidence folder")] = False,
    json_: Json = False,
) -> None:
    """Findings with severities; exit 2 for critical/high, 1 for medium/low, else 0."""
    from cli_trading.ops import report as rp
    from cli_trading.ops import security as sa

    loc = _loc()
    findings = sa.audit(loc)
    folder = rp.write_report(loc, findings) if report else None
    if json_:
        print_json({"findings": sa.to_json(findings), "exitCode": sa.exit_code(findings),
                    "reportFolder": str(folder) if folder else None})
    else:
        typer.echo(rp.markdown(findings, loc))
        if folder:
            typer.echo(f"evidence written to {folder}")
    raise typer.Exit(sa.exit_code(findings))


# -- secrets --------------------------------------------------------------------------------
@secrets_app.command("init")
def secrets_init(
    folder: Annotated[Path | None, typer.Option(help="default SECRETS_DIR or ./secrets")] = None,
) -> None:
    """Create strong secrets (mode 0600) and empty placeholders; existing files are kept."""
    from cli_trading.ops import secrets as sec

    target = folder or sec.secrets_dir()
    for row in sec.init(target):
        console.print(f"{row['secret']:<22} {row['action']}")
    console.print(f"\nStart with ADMIN_TOKEN_FILE={target.resolve()}/admin_token "
                  f"DATABASE_PASSWORD_FILE={target.resolve()}/postgres_password")


@secrets_app.command("rotate")
def secrets_rotate(
    force: Annotated[bool, typer.Option("--force", help="revoke the old token at once (breach)")] = False,
    grace: Annotated[float | None, typer.Option(help="seconds the old token stays valid")] = None,
    json_: Json = False,
) -> None:
    """Replace the admin token; running agents pick it up without a restart."""
    from cli_trading.ops import secrets as sec

    res = sec.rotate(_loc(), force=force, grace_s=grace)
    if force:  # the runbook's containment: change all secrets, reset OAuth2, regenerate TLS
        from cli_trading.ops.edge_secrets import contain

        res["containment"] = contain(sec.secrets_dir())
    if json_:
        return print_json(res)
    old = "revoked now" if force else f"valid until {res['previousValidUntil']}"
    console.print(f"[green]admin token rotated[/green] ({res['mode']}) in {res['tokenFile']}: new "
                  f"{res['newFingerprint']}, old {res['oldFingerprint']} {old}")
    console.print(f"audited: {res['audited']}, notified: {res['notified']}")
    for w in res["warnings"]:
        console.print(f"[yellow]{w}[/yellow]")
    console.print(f"export ADMIN_TOKEN=$(cat {res['tokenFile']})")
    for line in res.get("containment", []):
        console.print(line)


@secrets_app.command("status")
def secrets_status(json_: Json = False) -> None:
    """Each secret's age and where it is used (never its value)."""
    from cli_trading.ops import secrets as sec

    loc = _loc()
    rows = sec.status(loc)
    if json_:
        return print_json({"secrets": rows, "adminTokenInUse": sec.in_use(loc)})
    t = Table(title=f"secrets ({sec.secrets_dir().resolve()})")
    for col in ("secret", "state", "mode", "age (days)", "used by"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["secret"], r["state"], r.get("mode") or "", str(r.get("ageDays") or ""), r["usedBy"])
    console.print(t)
    console.print(f"running agents' admin token: {sec.in_use(loc)}")


def _loc() -> Located:
    return locate()
