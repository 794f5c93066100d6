"""How CLI commands reach a running system: agent URLs, the admin token, and errors turned into
clear messages with exit codes scripts can trust (0 ok, 1 refused/failed, 2 usage, 3 not running)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from cli_trading.contracts import AGENT_PORTS

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
NOT_RUNNING = 3


@dataclass
class Target:
    host: str = "127.0.0.1"
    port_base: int = 7001
    token: str | None = None
    scheme: str = "http"
    timeout: float = 10.0

    def url(self, agent: str = "orchestrator") -> str:
        return f"{self.scheme}://{self.host}:{self.port_base + AGENT_PORTS[agent] - 7001}"


def target(token: str | None = None, data_dir: Path | None = None) -> Target:
    """From flags, then the environment (CLI_TRADING_HOST, PORT_BASE, ADMIN_TOKEN, ADMIN_TOKEN_FILE),
    then the runtime file of a local `cli-trading up` (DATA_DIR or ./cli-trading-data)."""
    runtime: dict[str, Any] = {}
    folder = data_dir or Path(os.environ.get("DATA_DIR", "cli-trading-data"))
    with contextlib.suppress(OSError, ValueError):
        runtime = json.loads((folder / "runtime.json").read_text())
    tok = token or os.environ.get("ADMIN_TOKEN")
    token_file = os.environ.get("ADMIN_TOKEN_FILE") or runtime.get("adminTokenFile")
    if not tok and token_file and Path(token_file).exists():
        tok = Path(token_file).read_text().strip()
    return Target(
        host=os.environ.get("CLI_TRADING_HOST", "127.0.0.1"),
        port_base=int(os.environ.get("PORT_BASE", runtime.get("portBase", 7001))),
        token=tok,
        scheme=os.environ.get("CLI_TRADING_SCHEME", "http"),
    )


def call(t: Target, method: str, path: str, *, agent: str = "orchestrator", body: dict[str, Any] | None = None,
         params: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201, 202)) -> dict[str, Any]:
    """One HTTP call; on failure print why and exit with a code scripts can rely on."""
    headers = {"X-Admin-Token": t.token} if t.token else {}
    try:
        r = httpx.request(method, t.url(agent) + path, json=body, params=params, headers=headers, timeout=t.timeout,
                          verify=os.environ.get("CLI_TRADING_CA", True))
    except httpx.HTTPError as exc:
        err.print(f"[red]{agent} is not reachable at {t.url(agent)}[/red] ({type(exc).__name__}). "
                  "Is cli-trading running? Start it with `cli-trading up`.")
        raise typer.Exit(NOT_RUNNING) from exc
    try:
        data = r.json()
    except ValueError:
        data = {"raw": r.text}
    if r.status_code not in ok:
        msg = data.get("error", r.text) if isinstance(data, dict) else r.text
        hint = " (set ADMIN_TOKEN or ADMIN_TOKEN_FILE, or pass --token)" if r.status_code == 401 else ""
        err.print(f"[red]{method} {path} → {r.status_code}: {msg}{hint}[/red]")
        raise typer.Exit(1)
    return data if isinstance(data, dict) else {"data": data}


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
