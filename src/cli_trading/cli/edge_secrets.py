"""`cli-trading secrets tls` and `secrets oauth2`: the edge's certificate and oauth2-proxy's
cookie secret (the runbook's "Regenerate TLS certificates" and "Reset OAuth2 credentials")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli_trading.cli.client import console, print_json

Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Folder = Annotated[Path | None, typer.Option(help="default SECRETS_DIR or ./secrets")]


def register(app: typer.Typer) -> None:
    from cli_trading.cli.ops import secrets_app

    secrets_app.command("tls")(tls)
    secrets_app.command("oauth2")(oauth2)


def _folder(folder: Path | None) -> Path:
    from cli_trading.ops import secrets as sec

    return folder or sec.secrets_dir()


def tls(
    hosts: Annotated[str, typer.Option(help="names and addresses the certificate is for")] = "localhost,127.0.0.1",
    days: Annotated[int, typer.Option(help="validity of the server certificate")] = 397,
    renew_ca: Annotated[bool, typer.Option("--renew-ca", help="also replace the CA (clients must trust anew)")] = False,
    folder: Folder = None,
    json_: Json = False,
) -> None:
    """Generate or regenerate nginx's server certificate (and its CA when missing) in secrets/tls/."""
    from cli_trading.ops.edge_secrets import generate_tls

    res = generate_tls(
        _folder(folder) / "tls", hosts=[h.strip() for h in hosts.split(",") if h.strip()], days=days, renew_ca=renew_ca
    )
    if json_:
        return print_json(res)
    console.print(
        f"[green]server certificate[/green] {res['certificate']} for {', '.join(res['hosts'])} "
        f"until {res['notAfter']} (CA {res['ca']}{', renewed' if renew_ca else ''})"
    )
    console.print("reload the edge: docker-compose exec nginx nginx -s reload")


def oauth2(folder: Folder = None, json_: Json = False) -> None:
    """Rotate oauth2-proxy's cookie secret (signs everyone out); the client credentials must be
    reset at the identity provider."""
    from cli_trading.ops.edge_secrets import rotate_oauth2

    res = rotate_oauth2(_folder(folder))
    if json_:
        return print_json(res)
    console.print(f"[green]oauth2 cookie secret rotated[/green]; now {res['reminder']}")
