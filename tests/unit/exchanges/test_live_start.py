"""`cli-trading up --live`: explicit, confirmed once per exchange and URL, remembered."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli_trading.cli import app
from cli_trading.cli.live import CONFIRM_FILE, confirm_live, live_overrides
from cli_trading.config import ConfigError


def test_live_needs_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    with pytest.raises(ConfigError, match="up --live"):
        live_overrides(live=False)
    monkeypatch.delenv("MARKET_FEED", raising=False)
    assert live_overrides(live=True) == {"trading_mode": "live", "market_feed": "ccxt"}
    monkeypatch.setenv("TRADING_MODE", "paper")
    assert live_overrides(live=False) == {}


def test_the_first_start_is_confirmed_once_per_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    with pytest.raises(ConfigError, match="--yes-live-trading"):
        confirm_live(tmp_path, exchange_id="binance", url="http://127.0.0.1:7100", yes=False)
    assert not (tmp_path / CONFIRM_FILE).exists()
    confirm_live(tmp_path, exchange_id="binance", url="http://127.0.0.1:7100", yes=True)
    confirm_live(tmp_path, exchange_id="binance", url="http://127.0.0.1:7100", yes=False)  # remembered
    with pytest.raises(ConfigError, match="its real API"):  # another target asks again
        confirm_live(tmp_path, exchange_id="binance", url=None, yes=False)


def test_up_live_without_keys_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("EXCHANGE_API_KEY", "EXCHANGE_API_KEY_FILE", "EXCHANGE_API_SECRET", "EXCHANGE_API_SECRET_FILE"):
        monkeypatch.delenv(k, raising=False)
    r = CliRunner().invoke(app, ["up", "--live", "--yes-live-trading", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "EXCHANGE_API_KEY_FILE" in r.output
