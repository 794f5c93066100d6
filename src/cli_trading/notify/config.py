"""The notification policy file (`defaults/notifications.yaml`, or NOTIFY_CONFIG): classification
rules, the routing matrix, contacts and the escalation matrix, response times, throttling and
delivery retries. Strict: an unknown key is an error naming the file.

Channel URLs are apprise URLs. They come from the environment variable named by `env` (or the
secret file named by `<env>_FILE`), from a secret `file`, or — for local set-ups and tests — a
literal `url`. A channel without a URL is "not configured": recorded, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cli_trading.config import ConfigError, Settings, StrictModel, load_yaml, read_secret_file

Priority = Literal["P0", "P1", "P2", "P3"]
Category = Literal["trading", "security", "infrastructure"]
PRIORITIES: tuple[Priority, ...] = ("P0", "P1", "P2", "P3")
FILE_NAME = "notifications.yaml"


class Channel(StrictModel):
    label: str
    env: str | None = None
    file: str | None = None
    url: str | None = Field(default=None, repr=False)

    def resolve(self) -> str | None:
        """The apprise URL, or None when the channel is not configured."""
        if self.env and os.environ.get(self.env):
            return os.environ[self.env]
        if self.env and os.environ.get(f"{self.env}_FILE"):
            return read_secret_file(os.environ[f"{self.env}_FILE"])
        if self.file and Path(self.file).exists():
            return read_secret_file(self.file)
        return self.url or None


class Match(StrictModel):
    type: str | list[str] = "*"  # glob(s)
    severity: list[str] | None = None
    context: dict[str, str] = Field(default_factory=dict)
    above: dict[str, float] = Field(default_factory=dict)
    below: dict[str, float] = Field(default_factory=dict)


class Rule(StrictModel):
    name: str
    match: Match
    priority: Priority | Literal["from_context"]  # from_context: the event's context.priority (P0–P3)
    category: Category | None = None
    incident: bool | None = None  # default: P0/P1 open an incident
    cause: str = "{type}"
    title: str = "{message}"
    impact: str | None = None
    services: list[str] = Field(default_factory=list)
    ack_by_actor: bool = False  # the actor (an operator who halted by hand) already knows
    mitigates: str | None = None  # cause of the open incident this event mitigates
    throttle: bool = True


class Contact(StrictModel):
    name: str
    address: str | None = None
    channels: list[str] = Field(default_factory=list)


class Routing(StrictModel):
    severity: dict[Priority, list[str]]
    category: dict[Category, list[str]] = Field(default_factory=dict)


class DeliveryConfig(StrictModel):
    """The `delivery:` section: retries of a notification (not bus.Delivery, a stream message)."""

    attempts: int = Field(3, ge=1, le=10)
    backoff_seconds: float = Field(0.5, ge=0)


class WatchdogConfig(StrictModel):
    """The `watchdog:` section (not notify.watchdog.Watchdog, the probe's counts it configures)."""

    enabled: bool = True
    interval_seconds: float = Field(10, gt=0)
    failures: int = Field(3, ge=1)


class NotifyConfig(StrictModel):
    service: str = "CLI-Trading"
    channels: dict[str, Channel]
    routing: Routing
    response_minutes: dict[Priority, float]
    contacts: dict[str, Contact] = Field(default_factory=dict)
    escalation: dict[Priority, list[str]] = Field(default_factory=dict)
    status_update_minutes: float = Field(30, gt=0)
    throttle_seconds: float = Field(300, ge=0)
    postmortem_due_hours: float = Field(48, gt=0)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    loop_seconds: float = Field(5, gt=0)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    rules: list[Rule]

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        named = [*(c for cs in self.routing.severity.values() for c in cs)]
        named += [c for cs in self.routing.category.values() for c in cs]
        named += [c for contact in self.contacts.values() for c in contact.channels]
        if unknown := sorted({c for c in named if c not in self.channels}):
            raise ValueError(f"unknown channel(s) {unknown}; define them under channels")
        people = [p for chain in self.escalation.values() for p in chain]
        if unknown := sorted({p for p in people if p not in self.contacts}):
            raise ValueError(f"unknown contact(s) {unknown} in escalation; define them under contacts")
        if missing := [p for p in PRIORITIES if p not in self.response_minutes]:
            raise ValueError(f"response_minutes lacks {missing}")
        return self

    def route(self, priority: str, category: str) -> list[str]:
        """The runbook's matrix: channels for the priority, then for the category, no repeats."""
        names = [*self.routing.severity.get(priority, []), *self.routing.category.get(category, [])]  # type: ignore[call-overload]  # any str: unknown ones route nowhere
        return list(dict.fromkeys(names))

    def primary(self, priority: str) -> str:
        chain = self.escalation.get(priority) or []  # type: ignore[call-overload]  # any str, as above
        return self.contacts[chain[0]].name if chain else "on-call"


def config_path(settings: Settings) -> Path:
    return Path(settings.notify_config) if settings.notify_config else settings.config_file(FILE_NAME)


def load(settings: Settings) -> NotifyConfig:
    path = config_path(settings)
    if not path.exists():
        raise ConfigError(f"notification config {path} does not exist (NOTIFY_CONFIG)")
    return load_yaml(path, NotifyConfig)
