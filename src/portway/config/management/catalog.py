"""Environments, projects, API proxies (and their import), endpoints, policies, global policies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, RootModel

from portway.config.base import Model
from portway.config.declarative import GlobalPolicy
from portway.config.management.common import Answer, Versioned
from portway.config.models import ApiProxy, Endpoint, Environment, Project
from portway.config.variables import VariableBody


class EnvironmentView(Environment, Versioned):
    desired_revision: Annotated[
        int | None, Field(description="the revision the environment's workers should serve")
    ] = None


class EnvironmentVariableView(VariableBody, Versioned):
    """A variable of an environment; a secret one's value reads ``"***"``."""

    environment: str
    name: Annotated[str, Field(description="read by APIs as ${env.NAME}")]


class ProjectView(Project, Versioned):
    pass


class ApiProxyView(ApiProxy, Versioned):
    pass


class ImportedApi(ApiProxy):
    """An imported API proxy (``version`` is null on a dry run) and what the import skipped."""

    version: int | None
    warnings: list[str]


class ApiDeployment(Answer):
    environment: str
    api_revision: int
    redeploy_required: bool


class ApiSummary(Answer):
    project: str
    name: str
    description: str
    base_path: str
    hosts: list[str]
    backends: Annotated[int, Field(description="number of backends")]
    endpoints: Annotated[int, Field(description="number of endpoints")]
    maintenance: bool
    version: int
    deployments: list[ApiDeployment]
    redeploy_required: bool


class ApiRevisionRow(Answer):
    revision: int
    created_at: str
    actor: str


class ApiEnvironmentStatus(Answer):
    environment: str
    env_revision: int
    api_revision: int
    redeploy_required: bool
    reasons: list[str]
    working_copy_changed: bool
    changed_global_policies: list[str]


class ApiStatus(Answer):
    project: str
    name: str
    version: int
    deployments: list[ApiEnvironmentStatus]
    redeploy_required: bool


class EndpointRow(Endpoint):
    index: Annotated[int, Field(description="position in the proxy's endpoints")]


class EndpointView(EndpointRow):
    api_version: Annotated[int, Field(description="the API proxy's version; also the ETag")]


class PolicyOrder(Model):
    names: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]],
        Field(max_length=1000, description="every policy of the list, in the new order"),
    ]


class GlobalPolicyView(GlobalPolicy, Versioned):
    pass


class GlobalPolicyUse(Answer):
    project: str
    api: str
    scope: str
    entry: str


class StaleUse(Answer):
    """An environment where a user of the global policy serves an older version of it."""

    project: str
    api: str
    environment: str


class GlobalPolicyDetail(GlobalPolicyView):
    used_by: list[GlobalPolicyUse]
    redeploy_required: list[StaleUse]


class PolicyErrorCode(Answer):
    status: int
    message: str


class PolicyTypeSchema(Answer):
    summary: str
    phases: Annotated[list[str], Field(description="the lists (request, response, error) it fits")]
    errors: Annotated[dict[str, PolicyErrorCode], Field(description="its error codes")]
    config: Annotated[dict[str, Any], Field(description="the JSON schema of its config")]


class PolicySchemas(RootModel[dict[str, PolicyTypeSchema]]):
    """Every policy type by name."""
