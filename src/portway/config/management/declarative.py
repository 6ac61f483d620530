"""The declarative file: apply's plan and result (the file itself is ``DeclarativeConfig``)."""

from __future__ import annotations

from typing import Any

from portway.config.management.common import Answer
from portway.config.management.deployments import WorkerResult


class PlanSummary(Answer):
    create: int
    update: int
    delete: int
    unchanged: int


class PlanChange(Answer):
    kind: str
    name: str
    action: str
    diff: list[dict[str, Any]]


class Published(Answer):
    """A revision published to an environment (consumers changed)."""

    environment: str
    env_revision: int
    results: list[WorkerResult]


class ApplyResult(Answer):
    dry_run: bool
    applied: bool
    summary: PlanSummary
    changes: list[PlanChange]
    published: list[Published]
