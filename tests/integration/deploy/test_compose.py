"""docker-compose.yml: valid against the Compose specification, internally consistent (every
name it uses is defined), and true to the runbook's contract (service names, ports on 127.0.0.1,
a scalable notification-manager, healthchecks, limits, secrets, logs)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from tests.support.deploy import AGENT_PORTS, AGENTS, COMPOSE_FILE, ROOT, run, tool
from tests.support.ports import free_port

REQUIRED_SERVICES = {
    *AGENTS,
    "redis",
    "postgres",
    "prometheus",
    "alertmanager",
    "grafana",
    "nginx",
    "oauth2-proxy",
}
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def resolve(value: object) -> str:
    """A compose value with ${VAR:-default} replaced by its default (as with an empty .env)."""
    return _VAR.sub(lambda m: m.group(2) or "", str(value))


def check_jsonschema() -> str:
    for candidate in (Path(sys.executable).with_name("check-jsonschema"), shutil.which("check-jsonschema")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("check-jsonschema is not installed (pip install -e '.[dev]')")


def depends_on(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def ports_of(svc: dict) -> list[str]:
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            p = f"{p.get('host_ip', '')}:{p.get('published', '')}:{p.get('target', '')}"
        out.append(resolve(p))
    return out


def test_compose_file_matches_the_compose_specification() -> None:
    res = run([check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_project_name_and_services(compose: dict, services: dict) -> None:
    assert compose["name"] == "cli-trading"  # containers cli-trading-<service>-1, as the runbook types
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_every_name_used_is_defined(compose: dict, services: dict) -> None:
    volumes, secrets, networks = (set(compose.get(k) or {}) for k in ("volumes", "secrets", "networks"))
    problems = []
    for name, svc in services.items():
        problems += [f"{name}: depends_on unknown service {d}" for d in depends_on(svc) if d not in services]
        for v in svc.get("volumes") or []:
            source = v["source"] if isinstance(v, dict) else v.split(":", 1)[0]
            if source.startswith((".", "/")):
                continue
            if source not in volumes:
                problems.append(f"{name}: volume {source} not defined")
        for s in svc.get("secrets") or []:
            s = s["source"] if isinstance(s, dict) else s
            if s not in secrets:
                problems.append(f"{name}: secret {s} not defined")
        nets = svc.get("networks") or []
        for n in nets if isinstance(nets, list) else nets.keys():
            if n not in networks:
                problems.append(f"{name}: network {n} not defined")
    assert not problems, "\n".join(problems)


def test_unused_definitions_are_not_left_behind(compose: dict, services: dict) -> None:
    used_volumes, used_secrets, used_networks = set(), set(), set()
    for svc in services.values():
        for v in svc.get("volumes") or []:
            used_volumes.add(v["source"] if isinstance(v, dict) else v.split(":", 1)[0])
        used_secrets |= {s["source"] if isinstance(s, dict) else s for s in svc.get("secrets") or []}
        nets = svc.get("networks") or []
        used_networks |= set(nets if isinstance(nets, list) else nets.keys())
    assert set(compose.get("volumes") or {}) <= used_volumes
    assert set(compose.get("secrets") or {}) <= used_secrets
    assert set(compose.get("networks") or {}) <= used_networks


def test_secrets_come_from_the_secrets_folder(compose: dict, services: dict) -> None:
    for name, spec in compose["secrets"].items():
        assert spec["file"].startswith("./secrets/"), f"secret {name} is not a file under ./secrets"
    for name in AGENTS:
        assert "./secrets:/run/secrets:ro" in services[name]["volumes"], name


def test_bind_mounted_repository_files_exist(services: dict) -> None:
    for name, svc in services.items():
        for v in svc.get("volumes") or []:
            source = v["source"] if isinstance(v, dict) else v.split(":", 1)[0]
            if source.startswith("./deploy/"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_agents_publish_their_port_on_loopback_only(services: dict) -> None:
    for name, port in AGENT_PORTS.items():
        ports = ports_of(services[name])
        assert ports, f"{name} publishes no port"
        for p in ports:
            host_ip, published, target = p.rsplit(":", 2)
            assert host_ip == "127.0.0.1", f"{name}: {p} is not bound to 127.0.0.1"
            assert int(target) == port, f"{name}: {p} does not target {port}"
            assert str(port) == published.split("-")[0], f"{name}: {p} does not start at host port {port}"


def test_only_nginx_is_reachable_from_the_network(services: dict) -> None:
    for name, svc in services.items():
        for p in ports_of(svc):
            if name == "nginx":
                assert p in ("80:80", "443:443"), p
            else:
                assert p.startswith("127.0.0.1:"), f"{name} publishes {p} beyond the loopback"


def test_notification_manager_scales(services: dict) -> None:
    assert not [n for n, s in services.items() if "container_name" in s], "container_name breaks --scale"
    svc = services["notification-manager"]
    assert "deploy" not in svc or "replicas" not in svc["deploy"]
    for p in ports_of(svc):
        published = p.rsplit(":", 2)[1]
        assert "-" in published, f"notification-manager publishes the single fixed host port {p}"
        first, last = (int(x) for x in published.split("-"))
        assert first == 7006 and last > first


def test_every_service_is_supervised_and_limited(services: dict) -> None:
    for name, svc in services.items():
        assert svc.get("restart") == "unless-stopped", name
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert limits.get("cpus") and limits.get("memory"), f"{name} has no cpu/memory limit"


def test_dependencies_wait_for_health(services: dict) -> None:
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            if (name, dep) == ("nginx", "oauth2-proxy"):
                # deliberate: the edge comes up before OAuth2 credentials exist (see the comment)
                assert condition == "service_started"
                continue
            assert condition == "service_healthy", f"{name} → {dep}: {condition}"
            assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
    for name in AGENTS:
        assert set(depends_on(services[name])) >= {"redis", "postgres"}, name


def test_agents_share_one_image_and_run_their_agent(services: dict) -> None:
    images = {services[n]["image"] for n in AGENTS}
    assert len(images) == 1, images
    for name, port in AGENT_PORTS.items():
        svc = services[name]
        assert svc["build"]["context"] == "." and svc["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        assert svc["command"] == ["agent", name]
        assert svc["healthcheck"]["test"][:3] == ["CMD", "curl", "-fsS"], name
        assert svc["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/health", name


def test_agents_environment_and_logs(services: dict) -> None:
    for name in AGENTS:
        svc = services[name]
        env = {k: resolve(v) for k, v in svc["environment"].items()}
        assert "./logs:/app/logs" in svc["volumes"], name
        assert env["LOG_DIR"] == "/app/logs"
        assert env["BIND_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container network
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"] == "postgresql://trader@postgres:5432/trading"
        assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        assert env["ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
        assert env["TRADING_MODE"] == "paper"
        assert "ADMIN_TOKEN" not in env, "a token in the compose file ends up in docker inspect"


def test_compose_defaults_match_the_agents_defaults(services: dict) -> None:
    """A default written in docker-compose.yml must not silently differ from the code's."""
    from cli_trading.config import Settings

    raw = COMPOSE_FILE.read_text()
    checked = 0
    for name, default in _VAR.findall(raw):
        field = Settings.model_fields.get(name.lower())
        if field is None or default == "":
            continue
        expected = field.default
        if isinstance(expected, Decimal):
            assert Decimal(default) == expected, f"{name}: compose {default} ≠ code {expected}"
        else:
            assert default == str(expected), f"{name}: compose {default} ≠ code {expected}"
        checked += 1
    assert checked >= 3  # TRADING_MODE, DAILY_TARGET_PCT, DAILY_LOSS_LIMIT_PCT


def test_forwarded_identity_is_trusted_from_nginx_only(compose: dict, services: dict) -> None:
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["edge"]["ipv4_address"])
    ipam = compose["networks"]["edge"]["ipam"]["config"][0]
    assert nginx_ip in ipaddress.ip_network(ipam["subnet"])
    assert nginx_ip not in ipaddress.ip_network(ipam["ip_range"]), "a dynamic address could take nginx's"
    assert services["orchestrator"]["environment"]["FORWARDED_ALLOW_IPS"] == str(nginx_ip)
    assert services["grafana"]["environment"]["GF_AUTH_PROXY_WHITELIST"] == str(nginx_ip)
    assert "edge" in services["orchestrator"]["networks"]
    # the edge forwards the incident routes to the notification manager (deploy/nginx)
    assert services["notification-manager"]["environment"]["FORWARDED_ALLOW_IPS"] == str(nginx_ip)
    assert "edge" in services["notification-manager"]["networks"]


def test_postgres_as_the_runbook_types_it(services: dict) -> None:
    pg = services["postgres"]
    env = pg["environment"]
    assert env["POSTGRES_USER"] == "trader" and env["POSTGRES_DB"] == "trading"
    assert env["PGUSER"] == "trader" and env["PGDATABASE"] == "trading"  # psql -U trader -c "..."
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "shared_preload_libraries=pg_stat_statements" in pg["command"]
    assert "./deploy/postgres/init:/docker-entrypoint-initdb.d:ro" in pg["volumes"]
    init_sql = " ".join(p.read_text() for p in (ROOT / "deploy/postgres/init").glob("*.sql"))
    assert re.search(r"CREATE EXTENSION IF NOT EXISTS pg_stat_statements", init_sql)
    assert pg["healthcheck"]["test"][1:4] == ["pg_isready", "-U", "trader"]


def test_redis_command_line_runs_with_append_only_file(services: dict, tmp_path: Path) -> None:
    """Start a real redis-server with the compose service's arguments: they parse, and AOF is on."""
    args = [resolve(a) for a in services["redis"]["command"]]
    assert args[0] == "redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [
            tool("redis-server"),
            *args[1:],
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, f"redis-server refused the compose arguments:\n{proc.stdout.read()}"
                time.sleep(0.1)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
