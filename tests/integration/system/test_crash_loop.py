"""A crash loop under `up`'s supervisor, with real processes: an agent whose Redis is out exits
at start again and again; it is restarted with growing waits, never abandoned, announced once on
`notify.events`, and its state is published for the orchestrator's /health; once its dependency
is back it runs."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import redis

from cli_trading.config import load_settings
from cli_trading.embedded_redis import EmbeddedRedis, free_port
from cli_trading.supervised import Supervisor
from cli_trading.supervision import SUPERVISION_KEY, Backoff
from cli_trading.supervisor import prepare_env
from tests.support import ports


def test_a_crash_loop_is_loud_and_never_abandoned(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r")  # Redis of the supervisor: notifications and state
    url = server.start()
    settings = load_settings(data_dir=tmp_path, port_base=ports.reserve(10), redis_url=url)
    settings.logs_path.mkdir(parents=True, exist_ok=True)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # the agent's own Redis is out: it exits at start
    env = prepare_env(settings, redis_url=dead, token_file=None)
    sup = Supervisor(settings, env, agents=("risk-manager",), redis_url=url)
    child = sup.children["risk-manager"]
    child.backoff = Backoff(base_s=0.2, cap_s=1.0, stable_s=60)
    r = redis.Redis.from_url(url)
    try:
        sup.start_all()
        deadline = time.monotonic() + 90
        while child.backoff.restarts < 7 and time.monotonic() < deadline:
            sup.check()
            time.sleep(0.05)
        assert child.backoff.restarts >= 7, "abandoned (the old supervisor gave up after 5)"
        events = [orjson.loads(f[b"data"]) for _, f in r.xrange("notify.events")]
        loops = [e for e in events if e["type"] == "system.crash_loop"]
        assert len(loops) == 1, events  # announced once, not at every exit
        assert loops[0]["severity"] == "critical" and loops[0]["context"]["process"] == "risk-manager"
        sup.publish_state(time.monotonic())
        doc = orjson.loads(r.get(SUPERVISION_KEY) or b"{}")
        assert doc["crashLooping"] == ["risk-manager"], doc
        assert doc["processes"]["risk-manager"]["lastExit"] == 2
        # its Redis comes back: the next restart runs and stays up
        sup.env["REDIS_URL"] = url
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sup.check()
            if child.proc and child.backoff.next_start is None and time.monotonic() - child.backoff.started_at > 5:
                break
            time.sleep(0.1)
        assert child.proc is not None and child.proc.poll() is None, "the agent did not stay up"
    finally:
        sup.stop_all()
        server.stop()
