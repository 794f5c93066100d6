"""`cli-trading console` refuses to start without an admin token (exit 1, saying which settings)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli_trading.cli import app


def test_the_command_without_a_token_exits_1(tmp_path: Path) -> None:
    env = {"ADMIN_TOKEN": "", "ADMIN_TOKEN_FILE": "", "DATA_DIR": str(tmp_path)}
    res = CliRunner().invoke(app, ["console"], env=env)
    assert res.exit_code == 1
    assert "admin token" in res.output and "ADMIN_TOKEN_FILE" in res.output
