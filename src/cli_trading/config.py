"""Settings: environment variables (with *_FILE variants for secrets) and YAML files.

One root settings class; agent-specific knobs are plain fields with a prefix so that a typo in an
environment variable stays harmless but a typo in a YAML key is an error (extra="forbid").
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli_trading.contracts import AGENT_PORTS

DEFAULTS_DIR = Path(__file__).parent / "defaults"


class ConfigError(ValueError):
    """Settings that cannot work together; the message says what to change."""


def read_secret_file(path: str | Path | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"secret file {p} does not exist")
    return p.read_text().strip() or None


def normalize_database_url(url: str) -> str:
    """Accept what users write (postgresql://, postgres://, sqlite:///path) and return the
    SQLAlchemy async form (postgresql+asyncpg://, sqlite+aiosqlite:///)."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+") and not url.startswith("postgresql+asyncpg://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ConfigError(
        f"DATABASE_URL scheme not supported: {url.split('://', 1)[0]!r} "
        "(use postgresql://user:pass@host:5432/db or sqlite:///path/to/file.db)"
    )


def with_password(url: str, password: str | None) -> str:
    """Insert a password (from DATABASE_PASSWORD_FILE) into a URL that has none."""
    if not password or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    if ":" in userinfo:
        return url
    return f"{scheme}://{userinfo}:{quote(password, safe='')}@{host}"


def redact_url(url: str) -> str:
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


MIN_LIVE_RPS = 2  # EXCHANGE_MAX_RPS live: the executor and the candle feed need one whole request a second each


def live_problems(s: Settings) -> None:
    """Live mode with settings that cannot work: say what to change."""
    if not (s.exchange_api_key or s.exchange_api_key_file):
        raise ValueError("TRADING_MODE=live needs EXCHANGE_API_KEY_FILE (or EXCHANGE_API_KEY)")
    if not (s.exchange_api_secret or s.exchange_api_secret_file):
        raise ValueError("TRADING_MODE=live needs EXCHANGE_API_SECRET_FILE (or EXCHANGE_API_SECRET)")
    for name in ("exchange_api_key_file", "exchange_api_secret_file"):
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ValueError(f"{name.upper()}={path}: no such file")
    if s.exchange_url and not s.exchange_url.startswith(("http://", "https://")):
        raise ValueError(f"EXCHANGE_URL={s.exchange_url!r} must start with http:// or https://")
    if s.exchange_max_rps < MIN_LIVE_RPS:
        raise ValueError(
            f"EXCHANGE_MAX_RPS={s.exchange_max_rps:g}: live mode needs {MIN_LIVE_RPS} or more (the trade"
            " executor and the candle feed share it in whole requests per second, at least one each)"
        )
    quotes = {sym.split("-", 1)[-1] for sym in s.symbol_list}
    if len(quotes) != 1:
        raise ValueError(f"SYMBOLS={s.symbols!r}: live mode trades against one quote currency, got {sorted(quotes)}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    data_dir: Path = Path("cli-trading-data")
    log_dir: Path | None = None
    config_dir: Path | None = None
    log_stderr: bool = True
    log_level: str = "INFO"
    bind_host: str = "127.0.0.1"
    port_base: int = 7001
    redis_url: str | None = None
    database_url: str | None = None
    database_password_file: str | None = None
    admin_token: str | None = Field(default=None, repr=False)
    admin_token_file: str | None = None
    admin_token_grace_s: float = 300.0
    admin_allow_cidrs: str = ""
    auth_fail_limit: int = 10
    auth_fail_window_s: float = 60.0
    auth_lockout_s: float = 300.0
    auth_spike_threshold: int = 20
    auth_spike_halts: bool = False
    # analysis runs (POST /orchestrate/run without side) need the admin token too; manual orders always do
    run_requires_token: bool = False
    # POST /notify: the admin token or this one; POST /notify/alertmanager: this one (Alertmanager's
    # webhook http_config.authorization, so that Alertmanager never holds the admin token)
    notify_token: str | None = Field(default=None, repr=False)
    notify_token_file: str | None = None
    alertmanager_token: str | None = Field(default=None, repr=False)
    alertmanager_token_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # agents yield the CPU to the operator's tools (and to Redis/PostgreSQL) on a saturated machine
    agent_nice: int = Field(default=5, ge=0, le=19)

    trading_mode: Literal["paper", "live"] = "paper"
    symbols: str = "BTC-USD,ETH-USD"
    speed: float = 1.0
    # step mode: each replayed bar's runs finish before the next bar (deterministic; the order
    # of a backtest, so paper trading gives the backtest's fills); pacing is then ignored
    replay_step: bool = False
    replay_loop: bool = True  # start the replay again at the end of the data
    market_feed: Literal["replay", "ccxt"] = "replay"  # ccxt: live public candles from EXCHANGE_ID
    market_timeframe: str = "1h"
    market_poll_s: float = Field(default=300.0, gt=0)  # live candles: the longest wait between polls
    market_data_dir: Path | None = (
        None  # your own candles: <SYMBOL>_<label>.csv[.gz], columns ts,open,high,low,close,volume
    )
    starting_cash: Decimal = Decimal("10000")
    quote_currency: str = "USD"
    daily_target_pct: Decimal = Decimal("5")
    daily_loss_limit_pct: Decimal = Decimal("3")
    risk_fraction: Decimal = Decimal("0.02")
    fee_bps: Decimal = Decimal("10")
    slippage_bps: Decimal = Decimal("5")

    max_failures: int = 5
    claim_idle_ms: int = 30_000
    idempotency_ttl_s: int = 300  # duplicates arrive within seconds; a day of keys cost gigabytes at full load
    exec_failure_halt_n: int = 5
    db_outage_halt_s: float = 30.0

    exchange_id: str = "binance"
    exchange_api_key: str | None = Field(default=None, repr=False)
    exchange_api_key_file: str | None = None
    exchange_api_secret: str | None = Field(default=None, repr=False)
    exchange_api_secret_file: str | None = None
    # live trading (docs/live-trading.md)
    orchestrator_url: str | None = None  # where the executor asks for a drift halt (default: this host)
    exchange_url: str | None = None  # the exchange's REST base URL instead of the real one (the simulator)
    exchange_max_rps: float = Field(default=10.0, gt=0, le=1000)  # ceiling of requests per second
    exchange_poll_s: float = Field(default=1.0, gt=0)  # how often open orders are followed
    exchange_resolve_window_s: float = Field(default=15.0, gt=0)  # an unanswered order is found by then
    # an order the exchange keeps refusing with 429/418 for this long is rejected `rate_limited`
    exchange_rate_limit_give_up_s: float = Field(default=60.0, gt=0, le=3600)
    exchange_markets_refresh_s: float = Field(default=3600.0, gt=0)
    exchange_unknown_orders: Literal["cancel", "adopt", "ignore"] = "cancel"  # open orders the ledger does not know
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    reconcile_drift_limit: Decimal = Field(default=Decimal("10"), ge=0)  # in the quote currency
    # caps in live mode (0 = no cap): notional per order and per UTC day, orders open at once
    live_max_order_notional: Decimal = Field(default=Decimal("1000"), ge=0)
    live_max_daily_notional: Decimal = Field(default=Decimal("10000"), ge=0)
    live_max_open_orders: int = Field(default=5, ge=0)
    notify_config: str | None = None

    @field_validator("daily_target_pct", "daily_loss_limit_pct")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("must be a positive percentage")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.trading_mode == "live":
            live_problems(self)
        return self

    # -- derived -------------------------------------------------------------------------
    @property
    def logs_path(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def symbol_list(self) -> list[str]:
        return [s.strip().upper() for s in self.symbols.split(",") if s.strip()]

    @cached_property
    def db_url(self) -> str:
        url = self.database_url or f"sqlite:///{(self.data_dir / 'trading.db').resolve()}"
        return normalize_database_url(with_password(url, read_secret_file(self.database_password_file)))

    def port_of(self, agent: str) -> int:
        return self.port_base + (AGENT_PORTS[agent] - 7001)

    def config_file(self, name: str) -> Path:
        """A YAML file from CONFIG_DIR when present there, else the shipped default."""
        if self.config_dir and (self.config_dir / name).exists():
            return self.config_dir / name
        return DEFAULTS_DIR / name


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # any keyword: pydantic validates each
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise ConfigError(str(exc)) from exc


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


M = TypeVar("M", bound=StrictModel)


def load_yaml(path: Path, model: type[M]) -> M:
    """Parse a YAML file into a strict model; unknown keys are an error naming the file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return model.model_validate(raw)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
