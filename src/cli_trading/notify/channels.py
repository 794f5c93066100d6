"""Delivery through apprise (Slack webhooks, mailto, PagerDuty, generic JSON webhooks…): one
channel, a few attempts with exponential backoff, and an outcome that never carries a secret.

Apprise reports failures through its logger, not exceptions; each delivery runs in a worker
thread and its log lines are captured per thread, redacted, and kept as the error. The apprise
logger does not propagate to ours: its lines can name tokens (a PagerDuty key, a webhook path).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import apprise

from cli_trading.notify.config import Channel, NotifyConfig
from cli_trading.notify.templates import Rendered

_KIND = {"P0": apprise.NotifyType.FAILURE, "P1": apprise.NotifyType.FAILURE, "P2": apprise.NotifyType.WARNING}
_URLISH = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


class _PerThread(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        buf = self.lines.get(threading.get_ident())
        if buf is not None:
            buf.append(record.getMessage())


_capture = _PerThread()
_apprise_log = logging.getLogger("apprise")
_apprise_log.addHandler(_capture)
_apprise_log.propagate = False
_apprise_log.setLevel(logging.WARNING)


def redact(text: str, secret_url: str | None) -> str:
    """Remove the URL and each of its parts (user, password, host, path segments, query values)
    from a message, then any other URL-looking text."""
    if secret_url:
        text = text.replace(secret_url, "***")
        rest = secret_url.split("://", 1)[-1]
        for part in sorted(set(re.split(r"[/:@?&=#,]", rest)), key=len, reverse=True):
            if len(part) >= 3:
                text = text.replace(part, "***")
    return _URLISH.sub(lambda m: m.group(0).split("://", 1)[0] + "://***", text)


@dataclass(frozen=True)
class Outcome:
    channel: str
    label: str
    status: str  # sent | failed | not_configured
    attempts: int
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _notify_blocking(url: str, title: str, body: str, kind: apprise.NotifyType) -> tuple[bool, str]:
    me = threading.get_ident()
    _capture.lines[me] = []
    try:
        ap = apprise.Apprise()
        if not ap.add(url):
            return False, "not a valid apprise URL"
        ok = bool(ap.notify(body=body, title=title, notify_type=kind, body_format=apprise.NotifyFormat.TEXT))
        return ok, " | ".join(_capture.lines[me])[-500:] or ("" if ok else "delivery failed")
    except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed delivery, not a crash
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        _capture.lines.pop(me, None)


class Sender:
    """Delivers a rendered message to one named channel of the policy."""

    def __init__(self, cfg: NotifyConfig, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.cfg, self.sleep = cfg, sleep

    def channel(self, name: str) -> Channel:
        return self.cfg.channels[name]

    def configured(self, name: str) -> bool:
        try:
            return bool(self.channel(name).resolve())
        except ValueError:
            return False

    async def send(self, name: str, msg: Rendered, priority: str) -> Outcome:
        ch = self.channel(name)
        try:
            url = ch.resolve()
        except ValueError as exc:  # a named secret file is missing: say so, without the secret
            return Outcome(name, ch.label, "not_configured", 0, redact(str(exc), None))
        if not url:
            return Outcome(name, ch.label, "not_configured", 0, "no URL configured")
        kind = _KIND.get(priority, apprise.NotifyType.INFO)
        error = ""
        attempts = self.cfg.delivery.attempts
        for attempt in range(1, attempts + 1):
            ok, error = await asyncio.to_thread(_notify_blocking, url, msg.title, msg.body, kind)
            if ok:
                return Outcome(name, ch.label, "sent", attempt)
            if attempt < attempts:
                await self.sleep(self.cfg.delivery.backoff_seconds * 2 ** (attempt - 1))
        return Outcome(name, ch.label, "failed", attempts, redact(error, url))
