"""`cli-trading console`: the live terminal dashboard (the `console` package)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cli_trading.cli.client import err, target

Token = Annotated[str | None, typer.Option("--token", help="admin token (default: ADMIN_TOKEN / ADMIN_TOKEN_FILE)")]  # noqa: UP007


def register(app: typer.Typer) -> None:
    app.command()(console)


def console(
    read_only: Annotated[bool, typer.Option("--read-only", help="look, but refuse every action")] = False,
    url: Annotated[
        str | None, typer.Option("--url", envvar="CLI_TRADING_URL", help="the orchestrator's base URL (e.g. the edge)")
    ] = None,  # noqa: UP007
    interval: Annotated[
        float | None,  # noqa: UP007
        typer.Option(help="seconds between refreshes (default 0.5; 1 through --url: the edge's admin budget)",
                     min=0.2, max=1.0),
    ] = None,
    token: Token = None,
) -> None:
    """The operator's console: halt state, PnL, agents, streams, incidents, activity and logs,
    live; halt, unhalt, acknowledge, requeue and the health check at one key each.
    Exit 1 when the admin token is refused."""
    from cli_trading.console.app import ConsoleApp
    from cli_trading.console.client import ConsoleClient, Endpoint

    t = target(token)
    if not t.token:
        err.print("[red]cli-trading console needs the admin token[/red]: set ADMIN_TOKEN or ADMIN_TOKEN_FILE, "
                  "or pass --token (a local `cli-trading up` keeps it in its data folder's runtime.json)")
        raise typer.Exit(1)
    os.environ.setdefault("TEXTUAL_FPS", "20")  # a dashboard, not a game: fewer frames, less CPU
    if interval is None:  # the edge allows 2 admin calls a second: polling at 1/s leaves room for actions
        interval = 1.0 if url else 0.5
    app = ConsoleApp(ConsoleClient(Endpoint(t, url)), read_only=read_only, interval=interval)
    app.run()
    if app.return_code:
        raise typer.Exit(app.return_code)
