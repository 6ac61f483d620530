"""Wire structures of the cluster protocol."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from portway.config.base import JsonDatetime, Model, Slug


class DeployNotice(Model):
    """Push: revision ``revision`` of ``environment`` is ready to be pulled."""

    environment: Slug
    revision: Annotated[int, Field(ge=0)]


class DeployAck(Model):
    worker_id: str
    served_revision: int | None
    success: bool
    error: str | None = None


class StatusReport(Model):
    """What a worker reports about itself; also its registration and its poll."""

    environment: Slug
    address: Annotated[str, Field(description="URL where the manager reaches this worker")]
    served_revision: int | None = None
    healthy: bool = True
    started_at: JsonDatetime
    counters: dict[str, Any] = Field(default_factory=dict)


class StatusAnswer(Model):
    desired_revision: int | None


class EnvironmentInfo(Model):
    name: Slug
    desired_revision: int | None
