"""`up` and `agent`: running the system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli_trading.config import ConfigError, load_settings
from cli_trading.contracts import AGENTS


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(agent)


def up(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="where data and logs live")] = Path("cli-trading-data"),
    speed: Annotated[float, typer.Option(help="bars per second of replay")] = 1.0,
    step: Annotated[
        bool, typer.Option("--step", help="deterministic replay: each bar's runs finish before the next bar")
    ] = False,
    symbols: Annotated[str | None, typer.Option(help="comma-separated, e.g. BTC-USD,ETH-USD")] = None,  # noqa: UP007
    config: Annotated[
        Path | None, typer.Option("--config", help="folder with risk.yaml, strategies.yaml, notifications.yaml")
    ] = None,  # noqa: UP007,E501
    port_base: Annotated[int, typer.Option(help="first agent port (7001..7007 by default)")] = 7001,
    bind: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,  # noqa: UP007
    monitoring: Annotated[bool, typer.Option(help="also run Prometheus (and Alertmanager) locally")] = False,
    edge: Annotated[bool, typer.Option(help="also run the nginx edge (TLS) locally")] = False,
    live: Annotated[bool, typer.Option("--live", help="trade live on EXCHANGE_ID (docs/live-trading.md)")] = False,
    yes_live_trading: Annotated[
        bool, typer.Option("--yes-live-trading", help="skip the typed confirmation of the first live start")
    ] = False,
) -> None:
    """Start all seven agents (embedded Redis and SQLite unless REDIS_URL / DATABASE_URL are set)."""
    from cli_trading.cli.live import confirm_live, live_overrides
    from cli_trading.supervisor import UpError, run_up

    overrides: dict[str, object] = {"data_dir": data_dir, "speed": speed, "port_base": port_base}
    if step:
        overrides["replay_step"] = True
    if symbols:
        overrides["symbols"] = symbols
    if config:
        overrides["config_dir"] = config
    if bind:
        overrides["bind_host"] = bind
    try:
        overrides.update(live_overrides(live=live))
        settings = load_settings(**overrides)
        if live:
            confirm_live(data_dir, exchange_id=settings.exchange_id, url=settings.exchange_url, yes=yes_live_trading)
        extras = _extras(settings, monitoring=monitoring, edge=edge)
        raise typer.Exit(run_up(settings, extras=extras))
    except (ConfigError, UpError) as exc:
        typer.secho(f"cli-trading up: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _extras(settings: object, *, monitoring: bool, edge: bool) -> list[object]:
    out: list[object] = []
    if monitoring:
        from cli_trading.ops.monitoring import LocalMonitoring

        out.append(LocalMonitoring(settings))  # type: ignore[arg-type]  # a Settings (imported lazily)
    if edge:
        from cli_trading.ops.edge import LocalEdge

        out.append(LocalEdge(settings))  # type: ignore[arg-type]  # a Settings, as above
    return out


def agent(name: Annotated[str, typer.Argument(help="one of: " + ", ".join(AGENTS))]) -> None:
    """Run one agent in the foreground (what each container runs)."""
    from cli_trading.agents import agent_class
    from cli_trading.agents.process import run_agent

    if name not in AGENTS:
        typer.secho(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}", fg="red", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.secho(f"{name}: bad settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise typer.Exit(run_agent(agent_class(name), settings))
