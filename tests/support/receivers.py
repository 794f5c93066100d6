"""Real receivers for notification tests: an HTTP server (Slack-format and JSON webhooks, and a
path that answers 500 until told otherwise) and an SMTP server (aiosmtpd). Plus a migrated
database (SQLite file, or PostgreSQL in a fresh database) for the integration tests; Redis comes
from tests/conftest.py.
Nothing is mocked: apprise talks HTTP and SMTP to these servers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiosmtpd.controller import Controller

from cli_trading.config import normalize_database_url
from cli_trading.db import engine as dbengine
from tests.support import ports, postgres

SLACK_QUERY = "?:message=text&:title=&:version=&:type=&:attachments="


def free_port() -> int:
    return ports.free_port()


@dataclass
class Receiver:
    """Records every POST; paths under /fail answer 500 while `failing` is set."""

    port: int = 0
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failing: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, *, slack: bool = False) -> str:
        return f"json://127.0.0.1:{self.port}{path}" + (SLACK_QUERY if slack else "")

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.posts if p == path]

    def text(self, path: str) -> list[str]:
        return [b.get("text") or b.get("message") or "" for b in self.bodies(path)]

    def wait(self, path: str, n: int = 1, timeout: float = 20, contains: str = "") -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [t for t in self.text(path) if contains in t]
            if len(found) >= n:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{path}: wanted {n} containing {contains!r}, got {self.text(path)}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            path = self.path.split("?", 1)[0]
            fail = path.startswith("/fail") and rec.failing
            if not fail:
                with rec.lock:
                    rec.posts.append((path, orjson.loads(raw) if raw else {}))
            self.send_response(500 if fail else 200)
            self.end_headers()
            self.wfile.write(b"error" if fail else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[list[str], str]] = field(default_factory=list)

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=cli-trading@example.com&to={to}&mode=insecure"

    def to(self, rcpt: str) -> list[str]:
        return [body for rcpts, body in self.messages if rcpt in rcpts]

    def wait(self, rcpt: str, n: int = 1, timeout: float = 20, contains: str = "") -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [b for b in self.to(rcpt) if contains in b]
            if len(found) >= n:
                return found
            time.sleep(0.1)
        raise AssertionError(f"mail to {rcpt}: wanted {n} containing {contains!r}, got {len(self.to(rcpt))}")


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            import email
            from email.policy import default

            msg = email.message_from_bytes(envelope.content, policy=default)
            part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
            box.messages.append((list(envelope.rcpt_tos), part.get_content() if part else ""))
            return "250 OK"

    ctl = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    ctl.start()
    yield box
    ctl.stop()


def policy(receiver: Receiver, mailbox: Mailbox, **overrides: Any) -> dict[str, Any]:
    """The shipped policy, with every channel pointed at the local receivers."""
    from cli_trading.config import DEFAULTS_DIR

    doc = yaml.safe_load((DEFAULTS_DIR / "notifications.yaml").read_text())
    urls = {
        "trading-critical": receiver.url("/slack/trading-critical", slack=True),
        "trading-alerts": receiver.url("/slack/trading-alerts", slack=True),
        "ops-team": receiver.url("/slack/ops-team", slack=True),
        "security-immediate": receiver.url("/slack/security-immediate", slack=True),
        "pagerduty": receiver.url("/pagerduty"),
        "mail-oncall": mailbox.url("trading-oncall@company.com"),
        "mail-security": mailbox.url("security@company.com"),
        "mail-management": mailbox.url("engineering-mgmt@company.com"),
    }
    for name, ch in doc["channels"].items():
        ch.pop("env", None)
        ch["url"] = urls[name]
    doc.update({"delivery": {"attempts": 2, "backoff_seconds": 0.05}, "watchdog": {"enabled": False}})
    doc.update(overrides)
    return doc


def write_policy(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


# -- Redis and the database (integration) -----------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A migrated database, SQLite and PostgreSQL; yields its session factory."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgresql":
            url = normalize_database_url(await stack.enter_async_context(postgres.adatabase("ct_notify")))
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'trading.db'}"
        engine = dbengine.make_engine(url)
        try:
            await dbengine.migrate(engine, url)
            yield dbengine.sessionmaker(engine)
        finally:
            await engine.dispose()
