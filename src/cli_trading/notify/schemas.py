"""Request bodies of the notification manager's HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cli_trading.notify.config import Category, Priority


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(default=None, max_length=120, description="who does it (default: the token's fingerprint)")


class AckBody(Body):
    traceId: str | None = None
    incidentId: int | None = None
    commander: str | None = Field(default=None, max_length=120)

    @model_validator(mode="after")
    def _one(self) -> AckBody:
        if not self.traceId and self.incidentId is None:
            raise ValueError("give traceId or incidentId")
        return self


class OpenBody(Body):
    title: str = Field(min_length=1, max_length=200)
    severity: Priority
    category: Category = "trading"
    impact: str | None = Field(default=None, max_length=2000)
    commander: str | None = Field(default=None, max_length=120)
    services: list[str] = Field(default_factory=list)


class IncidentAck(Body):
    commander: str | None = Field(default=None, max_length=120)


class UpdateBody(Body):
    progress: str = Field(min_length=1, max_length=4000)
    nextSteps: str | None = Field(default=None, max_length=4000)
    status: Literal["INVESTIGATING", "MITIGATING"] | None = None
    eta: str | None = Field(default=None, max_length=120)
    impact: str | None = Field(default=None, max_length=2000)
    commander: str | None = Field(default=None, max_length=120)


class ResolveBody(Body):
    rootCause: str = Field(min_length=1, max_length=4000)
    resolution: str = Field(min_length=1, max_length=4000)
