"""Delivery through apprise (Slack webhooks, mailto, PagerDuty, generic JSON webhooks…): one
channel, a few attempts with exponential backoff, and an outcome that never carries a secret.

Apprise reports failures in its result's log, not as exceptions: those lines, redacted, are the
error we keep. The apprise logger does not propagate to ours: its lines can name tokens (a
PagerDuty key, a webhook path).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import apprise

from cli_trading.notify.config import Channel, NotifyConfig
from cli_trading.notify.templates import Rendered

_KIND = {"P0": apprise.NotifyType.FAILURE, "P1": apprise.NotifyType.FAILURE, "P2": apprise.NotifyType.WARNING}
_URLISH = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False  # its lines may name a token; we keep the redacted error instead


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
class ChannelResult:
    channel: str
    label: str
    status: str  # sent | failed | not_configured
    attempts: int
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _problems(result: Any) -> str:
    """Warnings and errors apprise (2.x) recorded for this call."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return ""
    out = []
    for entry in logs():
        level = entry.level if isinstance(entry.level, int) else logging.getLevelName(str(entry.level).upper())
        if isinstance(level, int) and level >= logging.WARNING:
            out.append(str(entry.message))
    return " | ".join(out)[-500:]


def _notify_blocking(url: str, title: str, body: str, kind: apprise.NotifyType) -> tuple[bool, str]:
    try:
        ap = apprise.Apprise()
        if not ap.add(url):
            return False, "not a valid apprise URL"
        result = ap.notify(body=body, title=title, notify_type=kind, body_format=apprise.NotifyFormat.TEXT)
        return bool(result), "" if result else (redact(_problems(result), url) or "delivery failed")
    except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed delivery, not a crash
        return False, f"{type(exc).__name__}: {redact(str(exc), url)}"


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

    async def send(self, name: str, msg: Rendered, priority: str) -> ChannelResult:
        ch = self.channel(name)
        try:
            url = ch.resolve()
        except ValueError as exc:  # a named secret file is missing: say so, without the secret
            return ChannelResult(name, ch.label, "not_configured", 0, redact(str(exc), None))
        if not url:
            return ChannelResult(name, ch.label, "not_configured", 0, "no URL configured")
        kind = _KIND.get(priority, apprise.NotifyType.INFO)
        error = ""
        attempts = self.cfg.delivery.attempts
        for attempt in range(1, attempts + 1):
            ok, error = await asyncio.to_thread(_notify_blocking, url, msg.title, msg.body, kind)
            if ok:
                return ChannelResult(name, ch.label, "sent", attempt)
            if attempt < attempts:
                await self.sleep(self.cfg.delivery.backoff_seconds * 2 ** (attempt - 1))
        return ChannelResult(name, ch.label, "failed", attempts, error)
