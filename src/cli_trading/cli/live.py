"""`cli-trading up --live`: live trading is explicit. The first live start on an exchange asks for
a typed confirmation (or `--yes-live-trading`), remembered in the data folder so that later starts
(and restarts after a crash) do not ask again; a new exchange or URL asks again."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from cli_trading.config import ConfigError
from cli_trading.contracts import iso

CONFIRM_FILE = "live-confirmed.json"
PHRASE = "LIVE"


def live_overrides(*, live: bool) -> dict[str, object]:
    """Settings for `up`: live only with --live; TRADING_MODE=live alone is refused."""
    env_mode = os.environ.get("TRADING_MODE", "paper").strip().lower()
    if not live:
        if env_mode == "live":
            raise ConfigError("TRADING_MODE=live: live trading starts only with `cli-trading up --live` (explicit)")
        return {}
    out: dict[str, object] = {"trading_mode": "live"}
    if "MARKET_FEED" not in os.environ:
        out["market_feed"] = "ccxt"  # candles from the exchange traded on, not the shipped replay
    return out


def _target(exchange_id: str, url: str | None) -> str:
    return f"{exchange_id} at {url or 'its real API'}"


def confirm_live(data_dir: Path, *, exchange_id: str, url: str | None, yes: bool) -> None:
    """Ask once per exchange and URL; raise ConfigError when nobody can answer."""
    marker = data_dir / CONFIRM_FILE
    target = _target(exchange_id, url)
    try:
        done = json.loads(marker.read_text()).get("target") == target
    except (OSError, ValueError, AttributeError):
        done = False
    if done:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"first live start on {target}: confirm in a terminal, or pass --yes-live-trading"
            )
        typer.secho(f"Live trading on {target}: orders will be real, with real money.", fg="yellow", bold=True)
        answer = typer.prompt(f"Type {PHRASE} to start live trading")
        if answer.strip() != PHRASE:
            raise ConfigError("live trading not confirmed: nothing started")
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"target": target, "confirmedAt": iso(), "by": "flag" if yes else "prompt"}))
