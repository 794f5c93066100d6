"""Dockerfile, .dockerignore and .env.example: static checks (no Docker engine here)."""

from __future__ import annotations

import re
import tomllib

from tests.support.deploy import COMPOSE_FILE, ROOT

DOCKERFILE = ROOT / "Dockerfile"

# Every variable the agents read that an operator sets (the settings contract).
SETTINGS_VARS = {
    "DATA_DIR",
    "LOG_DIR",
    "REDIS_URL",
    "DATABASE_URL",
    "DATABASE_PASSWORD_FILE",
    "ADMIN_TOKEN_FILE",
    "BIND_HOST",
    "TRADING_MODE",
    "DAILY_TARGET_PCT",
    "DAILY_LOSS_LIMIT_PCT",
    "CONFIG_DIR",
    "NOTIFY_CONFIG",
}


def stages() -> list[tuple[str, str]]:
    """(FROM line, body) per build stage, ARG defaults substituted."""
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    text = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)
    parts = re.split(r"^(FROM .*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def test_multi_stage_build_with_a_slim_runtime() -> None:
    st = stages()
    assert len(st) >= 2
    builder_from, builder = st[0]
    runtime_from, runtime = st[-1]
    assert " AS builder" in builder_from and "pip wheel" in builder
    assert runtime_from.startswith("FROM python:3.11-slim")
    assert "COPY --from=builder" in runtime


def test_the_image_runs_the_compiled_core() -> None:
    """The README's install builds the compiled core (the `fast` extra, then build_native): so
    does the image, in a stage of its own whose tools (the dev lock's) stay there; the runtime
    takes the build alone, points at it, and its build fails if it would not load."""
    st = {frm.split(" AS ")[-1].strip(): body for frm, body in stages()}
    assert stages()[1][0].startswith("FROM builder AS native")
    native = st["native"]
    assert "pip install --require-hashes -r requirements-dev.lock" in native
    assert "python -m cli_trading.build_native" in native
    out = re.search(r"^ENV CLI_TRADING_NATIVE_DIR=(\S+)$", native, re.M)
    assert out, "the native stage builds into a folder of its own"
    runtime = st["runtime"]
    assert f"COPY --from=native {out[1]} {out[1]}" in runtime
    assert re.search(rf"CLI_TRADING_NATIVE_DIR={re.escape(out[1])}\b", runtime)
    assert "assert n.compiled()" in runtime
    assert not re.search(r"COPY --from=native /opt/venv", runtime), "mypy and the dev tools stay out"


def test_runtime_has_the_runbook_tools_and_no_root() -> None:
    _, runtime = stages()[-1]
    install = " ".join(re.findall(r"apt-get install[^\n]*(?:\\\n[^\n]*)*", runtime))
    assert "curl" in install and "netcat-openbsd" in install  # healthchecks; `nc -z redis 6379`
    users = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert users and users[-1] not in ("root", "0"), "the runtime stage must not run as root"
    assert re.search(r"^WORKDIR /app$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["cli-trading"\]$', runtime, re.M)
    assert re.search(r'^CMD \["agent", ?"orchestrator"\]$', runtime, re.M)
    assert re.search(r"^EXPOSE 7001-7007$", runtime, re.M)


def test_entrypoint_is_the_projects_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "cli-trading" in project["project"]["scripts"]


def test_dockerignore_sends_only_the_sources() -> None:
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "**", "deny by default: secrets, data and logs never reach the build context"
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M):
        copied |= {s.rstrip("/") for s in src.split()}
    assert copied and copied <= included, copied - included
    assert not any(x.startswith(("secrets", "logs", "cli-trading-data", ".env")) for x in included)


def test_env_example_documents_every_variable() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    assert documented >= SETTINGS_VARS, SETTINGS_VARS - documented
    used_by_compose = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert used_by_compose <= documented, used_by_compose - documented


def test_env_example_holds_no_secret_value() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in ("ADMIN_TOKEN", "POSTGRES_PASSWORD", "EXCHANGE_API_KEY", "EXCHANGE_API_SECRET"):
        assert not re.search(rf"^{name}=\S", text, re.M), name
