"""Where is the system? The ops commands find Redis, the database, the data folder and the admin
token the way an operator would, in this order:

1. the environment (DATA_DIR, REDIS_URL, DATABASE_URL, PORT_BASE, ADMIN_TOKEN, ADMIN_TOKEN_FILE);
2. `<DATA_DIR or ./cli-trading-data>/runtime.json` written by `cli-trading up`;
3. the environment of the orchestrator process answering on PORT_BASE, when it runs on this
   machine as the same user (found through its GET /status pid);
4. defaults: ./cli-trading-data and its SQLite file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli_trading.config import Settings, normalize_database_url, read_secret_file, redact_url, with_password
from cli_trading.contracts import AGENT_PORTS

DEFAULT_DATA = Path("cli-trading-data")


@dataclass
class Located:
    data_dir: Path
    port_base: int
    redis_url: str | None
    db_url: str
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    process_env: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgresql")

    @property
    def sqlite_path(self) -> Path | None:
        if self.is_postgres:
            return None
        return Path(self.db_url.split(":///", 1)[1])

    @property
    def logs_dir(self) -> Path:
        return self.settings.logs_path

    @property
    def backup_root(self) -> Path:
        return Path(os.environ.get("BACKUP_DIR") or self.data_dir / "backups")

    def url(self, agent: str = "orchestrator") -> str:
        return f"http://127.0.0.1:{self.port_base + AGENT_PORTS[agent] - 7001}"

    def token_file(self) -> Path | None:
        f = self.pick("ADMIN_TOKEN_FILE")
        return Path(f) if f else None

    def token(self) -> str | None:
        """The admin token in force: ADMIN_TOKEN, else the token file's content."""
        tok = self.pick("ADMIN_TOKEN")
        if tok:
            return tok
        f = self.token_file()
        try:
            return read_secret_file(f) if f else None
        except ValueError:
            return None

    def pick(self, key: str) -> str | None:
        for layer in (dict(os.environ), runtime_env(self.runtime), self.process_env):
            if layer.get(key):
                return layer[key]
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "dataDir": str(self.data_dir.resolve()),
            "portBase": self.port_base,
            "redis": redact_url(self.redis_url) if self.redis_url else None,
            "database": redact_url(self.db_url),
            "sources": self.sources,
        }


def read_runtime(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / "runtime.json").read_text())
    except (OSError, ValueError):
        return {}


def runtime_env(runtime: dict[str, Any]) -> dict[str, str]:
    out = {
        "REDIS_URL": runtime.get("redisUrl"),
        "PORT_BASE": str(runtime["portBase"]) if runtime.get("portBase") else None,
        "BIND_HOST": runtime.get("bindHost"),
        "ADMIN_TOKEN_FILE": runtime.get("adminTokenFile"),
    }
    db = runtime.get("databaseUrl") or ""
    if db and "***" not in db:
        out["DATABASE_URL"] = db
    return {k: v for k, v in out.items() if v}


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def agent_pid(url: str) -> int | None:
    """The pid of the agent answering at `url`, when it is a cli-trading process on this machine."""
    try:
        pid = int(httpx.get(url + "/status", timeout=1.5).json()["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError):
        return None
    return pid if b"cli_trading" in cmdline or b"cli-trading" in cmdline else None


def process_env(port_base: int) -> dict[str, str]:
    pid = agent_pid(f"http://127.0.0.1:{port_base}")
    if pid is None:
        return {}
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def locate(*, probe: bool = True) -> Located:
    env = dict(os.environ)
    data_dir = Path(env["DATA_DIR"]) if env.get("DATA_DIR") else None
    runtime = read_runtime(data_dir or DEFAULT_DATA)
    if data_dir is None and runtime and not pid_alive(runtime.get("pid")):
        runtime = {}
    port_base = int(env.get("PORT_BASE") or runtime.get("portBase") or 7001)
    proc = process_env(port_base) if probe else {}
    sources = {"dataDir": "DATA_DIR" if data_dir else ""}
    if data_dir is None:
        if runtime:
            data_dir, sources["dataDir"] = DEFAULT_DATA, "runtime.json"
        elif proc.get("DATA_DIR"):
            data_dir, sources["dataDir"] = Path(proc["DATA_DIR"]), "running orchestrator"
        else:
            data_dir, sources["dataDir"] = DEFAULT_DATA, "default"
        runtime = runtime or read_runtime(data_dir)
    layers = [("environment", env), ("runtime.json", runtime_env(runtime)), ("running orchestrator", proc)]

    def pick(key: str) -> str | None:
        for name, layer in layers:
            if layer.get(key):
                sources[key] = name
                return layer[key]
        return None

    redis_url = pick("REDIS_URL")
    raw_db = pick("DATABASE_URL") or f"sqlite:///{(data_dir / 'trading.db').resolve()}"
    pw_file = pick("DATABASE_PASSWORD_FILE")
    settings_env = {k: v for k, v in {**proc, **env}.items() if k.isupper()}
    settings = _settings(settings_env, data_dir, port_base)
    db_url = normalize_database_url(with_password(raw_db, _quiet_secret(pw_file)))
    return Located(data_dir, port_base, redis_url, db_url, settings, sources, runtime, proc)


def _quiet_secret(path: str | None) -> str | None:
    try:
        return read_secret_file(path)
    except ValueError:
        return None


def _settings(env: dict[str, str], data_dir: Path, port_base: int) -> Settings:
    """Settings as the running system sees them (its environment over ours), never failing."""
    keep: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    keep.update({"data_dir": data_dir, "port_base": port_base, "database_password_file": None})
    try:
        return Settings(_env_file=None, **keep)
    except ValueError:
        return Settings(data_dir=data_dir, port_base=port_base)
