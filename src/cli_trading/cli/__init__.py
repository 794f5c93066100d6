"""The command line: `cli-trading …`. Each area registers its commands from its own module."""

from __future__ import annotations

import typer

from cli_trading.cli import backtest as backtest_cli
from cli_trading.cli import console, edge_secrets, incidents, operator, ops, system
from cli_trading.cli import data as data_cli
from cli_trading.cli import exchange_sim as exchange_sim_cli
from cli_trading.cli import optimize as optimize_cli

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="cli-trading: a self-hosted trading system you can stop, understand and recover.",
)
for area in (system, operator, incidents, ops, edge_secrets, data_cli, backtest_cli, exchange_sim_cli, optimize_cli,
             console):
    area.register(app)
