"""Settings: database URLs, secrets from files, validation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cli_trading.config import (
    ConfigError,
    Settings,
    load_settings,
    normalize_database_url,
    read_secret_file,
    redact_url,
    with_password,
)

ENV_VARS = (
    "DATABASE_URL", "DATABASE_PASSWORD_FILE", "REDIS_URL", "TRADING_MODE", "EXCHANGE_API_KEY",
    "EXCHANGE_API_KEY_FILE", "EXCHANGE_API_SECRET", "EXCHANGE_API_SECRET_FILE", "DAILY_TARGET_PCT",
    "DAILY_LOSS_LIMIT_PCT", "ADMIN_TOKEN", "ADMIN_TOKEN_FILE", "DATA_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# -- database URLs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://trader:pw@db:5432/trading", "postgresql+asyncpg://trader:pw@db:5432/trading"),
        ("postgres://trader:pw@db:5432/trading", "postgresql+asyncpg://trader:pw@db:5432/trading"),
        ("postgresql+psycopg://trader@db/trading", "postgresql+asyncpg://trader@db/trading"),
        ("postgresql+asyncpg://trader@db/trading", "postgresql+asyncpg://trader@db/trading"),
        ("sqlite:////var/lib/ct/trading.db", "sqlite+aiosqlite:////var/lib/ct/trading.db"),
        ("sqlite:///relative/trading.db", "sqlite+aiosqlite:///relative/trading.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_normalize_database_url(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert normalize_database_url(expected) == expected  # idempotent


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "redis://localhost:6379/0", "trading.db", "http://x"])
def test_bad_database_scheme(bad: str) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        normalize_database_url(bad)


def test_with_password() -> None:
    assert with_password("postgresql://trader@db:5432/trading", "s3cr/t@!") == (
        "postgresql://trader:s3cr%2Ft%40%21@db:5432/trading"
    )
    # Already has a password, no user part, no password given: unchanged.
    assert with_password("postgresql://trader:pw@db/trading", "other") == "postgresql://trader:pw@db/trading"
    assert with_password("postgresql://db/trading", "pw") == "postgresql://db/trading"
    assert with_password("postgresql://trader@db/trading", None) == "postgresql://trader@db/trading"
    assert with_password("sqlite:///x.db", "pw") == "sqlite:///x.db"


def test_redact_url() -> None:
    assert redact_url("postgresql+asyncpg://trader:hunter2@db:5432/trading") == (
        "postgresql+asyncpg://trader:***@db:5432/trading"
    )
    assert redact_url("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("postgresql://trader@db/trading") == "postgresql://trader@db/trading"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "hunter2" not in redact_url("postgresql://u:hunter2@h/d")


# -- settings validation ---------------------------------------------------------------------
def test_defaults() -> None:
    s = Settings()
    assert s.trading_mode == "paper"
    assert s.daily_target_pct == Decimal("5") and s.daily_loss_limit_pct == Decimal("3")
    assert s.symbol_list == ["BTC-USD", "ETH-USD"]
    assert s.port_of("orchestrator") == 7001 and s.port_of("parameter-optimizer") == 7007


@pytest.mark.parametrize("field", ["daily_target_pct", "daily_loss_limit_pct"])
@pytest.mark.parametrize("value", ["0", "-1", "-0.01"])
def test_non_positive_limits_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        Settings(**{field: Decimal(value)})
    with pytest.raises(ConfigError, match="positive"):
        load_settings(**{field: Decimal(value)})


def test_limits_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_TARGET_PCT", "2.5")
    monkeypatch.setenv("DAILY_LOSS_LIMIT_PCT", "1.25")
    s = Settings()
    assert s.daily_target_pct == Decimal("2.5") and s.daily_loss_limit_pct == Decimal("1.25")
    monkeypatch.setenv("DAILY_LOSS_LIMIT_PCT", "-3")
    with pytest.raises(ConfigError):
        load_settings()


def test_live_mode_needs_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EXCHANGE_API_KEY"):
        load_settings(trading_mode="live")
    with pytest.raises(ConfigError, match="EXCHANGE_API_SECRET"):
        load_settings(trading_mode="live", exchange_api_key="k")
    assert load_settings(trading_mode="live", exchange_api_key="k", exchange_api_secret="s").trading_mode == "live"
    key, sec = tmp_path / "key", tmp_path / "secret"
    key.write_text("k\n")
    sec.write_text("s\n")
    ok = load_settings(trading_mode="live", exchange_api_key_file=str(key), exchange_api_secret_file=str(sec))
    assert ok.trading_mode == "live"
    with pytest.raises(ConfigError, match="EXCHANGE_API_SECRET_FILE=.*no such file"):
        load_settings(trading_mode="live", exchange_api_key_file=str(key), exchange_api_secret_file=str(tmp_path / "x"))


def test_live_mode_rejects_inconsistent_settings() -> None:
    keys = {"trading_mode": "live", "exchange_api_key": "k", "exchange_api_secret": "s"}
    with pytest.raises(ConfigError, match="one quote currency"):
        load_settings(**keys, symbols="BTC-USDT,ETH-BTC")
    with pytest.raises(ConfigError, match="EXCHANGE_URL"):
        load_settings(**keys, exchange_url="127.0.0.1:7100")
    assert load_settings(**keys, exchange_url="http://127.0.0.1:7100", symbols="BTC-USDT").exchange_url


def test_live_mode_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    with pytest.raises(ConfigError):
        load_settings()
    monkeypatch.setenv("EXCHANGE_API_KEY", "abc")
    monkeypatch.setenv("EXCHANGE_API_SECRET", "def")
    assert load_settings().exchange_api_key == "abc"


def test_secrets_not_in_repr() -> None:
    s = Settings(admin_token="tok-very-secret", exchange_api_key="key-very-secret", exchange_api_secret="sec")
    assert "very-secret" not in repr(s)


# -- secret files ----------------------------------------------------------------------------
def test_read_secret_file(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    p.write_text("  s3cret-value \n")
    assert read_secret_file(p) == "s3cret-value"
    assert read_secret_file(str(p)) == "s3cret-value"
    (tmp_path / "empty").write_text("\n")
    assert read_secret_file(tmp_path / "empty") is None
    assert read_secret_file(None) is None
    assert read_secret_file("") is None
    with pytest.raises(ConfigError, match="does not exist"):
        read_secret_file(tmp_path / "missing")


def test_database_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "db_password"
    pw.write_text("p@ss:word\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://trader@postgres:5432/trading")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(pw))
    s = Settings()
    assert s.db_url == "postgresql+asyncpg://trader:p%40ss%3Aword@postgres:5432/trading"


def test_database_password_file_missing_is_an_error(tmp_path: Path) -> None:
    s = Settings(database_url="postgresql://trader@db/trading", database_password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError):
        _ = s.db_url


def test_default_db_url_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data")
    assert s.db_url == f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'trading.db').resolve()}"


def test_agent_secret_helper_reads_file_variant(tmp_path: Path) -> None:
    from cli_trading.agents.base import secret

    f = tmp_path / "token"
    f.write_text("from-file\n")
    assert secret(Settings(admin_token_file=str(f)), "admin_token") == "from-file"
    assert secret(Settings(admin_token="direct", admin_token_file=str(f)), "admin_token") == "direct"
    assert secret(Settings(), "exchange_api_secret") is None
