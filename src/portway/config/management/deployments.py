"""Deployments (one API or a batch), their history, environment revisions, workers, audit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from portway.config.base import Model, Slug
from portway.config.management.common import Answer

Action = Literal["deploy", "undeploy", "rollback"]


class DeploymentRequest(Model):
    project: Slug = "default"
    api: Slug
    action: Action = "deploy"
    api_revision: Annotated[int | None, Field(ge=1, le=10**9, description="for rollback")] = None
    note: Annotated[str, Field(max_length=1000)] = ""


class BatchItem(Model):
    project: Slug = "default"
    api: Slug
    action: Action = "deploy"
    api_revision: Annotated[int | None, Field(ge=1, le=10**9, description="for rollback")] = None


class BatchRequest(Model):
    """Several APIs deployed, rolled back or undeployed as one environment revision."""

    items: Annotated[list[BatchItem], Field(min_length=1, max_length=10000)]
    note: Annotated[str, Field(max_length=1000)] = ""

    @model_validator(mode="after")
    def _unique(self) -> BatchRequest:
        keys = [(i.project, i.api) for i in self.items]
        if len(set(keys)) != len(keys):
            raise ValueError("items: an API appears twice")
        return self


class WorkerResult(Answer):
    """One worker's answer to the push of a revision."""

    worker: str
    address: str
    success: bool
    served_revision: int | None = None
    error: str | None = None
    at: str
    seconds: float


class DeploymentItem(Answer):
    project: str
    api: str
    action: str
    api_revision: int | None


class Deployment(Answer):
    """A deployment record: what changed, the revision it built, and each worker's answer.

    ``status``: pending, published, failed, interrupted (the manager stopped after the revision
    went live) or recovered (a live revision found without a record)."""

    id: str
    environment: str
    action: Annotated[
        str, Field(description="deploy, undeploy, rollback, batch, consumers or recovered")
    ]
    project: str | None
    api: str | None
    api_id: str | None = None
    api_revision: int | None
    items: list[DeploymentItem] = []
    env_revision: int
    previous_revision: int | None = None
    note: str
    actor: str
    at: str
    status: str | None = None
    error: str | None = None
    results: list[WorkerResult]


class ProbeView(Answer):
    ok: bool
    at: str
    consecutive_failures: int
    last_ok_at: str | None
    error: str | None


class WorkerPolicyCounters(Answer):
    """One policy's counters since the worker process started, as it last reported them."""

    key: Annotated[str, Field(description="what the policy is attached to (API, route)")]
    scope: str
    policy: str
    evaluated: int
    allowed: int
    denied: int
    errors: int
    skipped: int
    shadow_denied: int


class WorkerView(Answer):
    id: str
    environment: str | None
    address: str | None
    state: Annotated[str, Field(description="up, down, unreachable or unknown")]
    served_revision: int | None
    last_served_revision: int | None
    desired_revision: int | None
    in_sync: bool
    converge_seconds: float | None
    last_report: str | None
    healthy: bool
    probe: ProbeView | None
    started_at: str | None
    registered_at: str | None
    policy_counters: Annotated[
        list[WorkerPolicyCounters],
        Field(description="per-policy counters of the last status report (none before one)"),
    ]


class FieldChange(Answer):
    field: str
    old: Any = None
    new: Any = None


class AuditRecord(Answer):
    id: str
    at: str
    actor: str
    action: str
    target: str
    changes: list[FieldChange]
    values_omitted: str | None = None
    """Set when the old and new values were too large to keep: why, and how many fields changed."""
