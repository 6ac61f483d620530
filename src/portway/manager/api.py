"""The management API (``/api/v1``): REST + JSON, documented by the OpenAPI document at
``/api/v1/openapi.json``. The web UI and the CLI use exactly this API."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field

from portway.config.base import Model, Slug
from portway.config.models import ApiProxy, Environment, Project
from portway.manager.auth import Permission, Principal, authenticate_token
from portway.manager.context import Services
from portway.manager.problems import ApiError
from portway.stores.config_store import Document

router = APIRouter(prefix="/api/v1")
bearer = HTTPBearer(auto_error=False, description="a personal access token (pwt_…)")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


async def principal(
    svc: Svc,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "a Bearer token is required")
    found = await authenticate_token(svc.store, credentials.credentials)
    if found is None:
        raise ApiError(401, "unauthenticated", "the token is invalid, expired or revoked")
    return found


def allowed(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.can(permission):
            raise ApiError(
                403, "forbidden", f"role {who.role.value} lacks the {permission.value} permission"
            )
        return who

    return check


Reader = Annotated[Principal, Depends(allowed(Permission.READ))]
ApiWriter = Annotated[Principal, Depends(allowed(Permission.WRITE_APIS))]
DeployerRole = Annotated[Principal, Depends(allowed(Permission.DEPLOY))]
EnvManager = Annotated[Principal, Depends(allowed(Permission.MANAGE_ENVIRONMENTS))]


def versioned(doc: Document, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{doc.version}"'
    return {**doc.data, "version": doc.version}


def if_match(value: str | None) -> int | None:
    if value is None:
        return None
    stripped = value.strip().removeprefix("W/").strip('"')
    if not stripped.isdigit():
        raise ApiError(422, "validation_error", "If-Match must be a version like \"3\"", "If-Match")
    return int(stripped)


IfMatch = Annotated[str | None, Header(alias="If-Match", description="the version you read")]


# who am I ----------------------------------------------------------------------------------
@router.get("/me", tags=["auth"])
async def me(who: Reader) -> dict[str, str]:
    return {"username": who.username, "role": who.role.value}


# environments ------------------------------------------------------------------------------
@router.get("/environments", tags=["environments"])
async def list_environments(svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [{**d.data, "version": d.version} for d in await svc.catalog.environments()]


@router.post("/environments", status_code=201, tags=["environments"])
async def create_environment(
    body: Environment, svc: Svc, who: EnvManager, response: Response
) -> dict[str, Any]:
    return versioned(await svc.catalog.create_environment(body, who.username), response)


@router.get("/environments/{environment}", tags=["environments"])
async def get_environment(
    environment: str, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    return versioned(await svc.catalog.environment(environment), response)


# projects ----------------------------------------------------------------------------------
@router.get("/projects", tags=["projects"])
async def list_projects(svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [{**d.data, "version": d.version} for d in await svc.catalog.projects()]


@router.post("/projects", status_code=201, tags=["projects"])
async def create_project(
    body: Project, svc: Svc, who: ApiWriter, response: Response
) -> dict[str, Any]:
    return versioned(await svc.catalog.create_project(body, who.username), response)


# API proxies -------------------------------------------------------------------------------
def _in_project(project: str, body: ApiProxy) -> ApiProxy:
    if "project" in body.model_fields_set and body.project != project:
        raise ApiError(
            422, "validation_error", f"must equal the project in the path ({project})", "body.project"
        )
    return body.model_copy(update={"project": project})


@router.get("/projects/{project}/apis", tags=["apis"])
async def list_apis(
    project: str,
    svc: Svc,
    _: Reader,
    name_contains: Annotated[str | None, Query(max_length=100)] = None,
) -> list[dict[str, Any]]:
    docs = await svc.catalog.apis(project)
    if name_contains:
        docs = [d for d in docs if name_contains in d.data["name"]]
    return [{**d.data, "version": d.version} for d in docs]


@router.post("/projects/{project}/apis", status_code=201, tags=["apis"])
async def create_api(
    project: str, body: ApiProxy, svc: Svc, who: ApiWriter, response: Response
) -> dict[str, Any]:
    doc = await svc.catalog.create_api(_in_project(project, body), who.username)
    response.headers["Location"] = f"/api/v1/projects/{project}/apis/{body.name}"
    return versioned(doc, response)


@router.get("/projects/{project}/apis/{name}", tags=["apis"])
async def get_api(
    project: str, name: str, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    return versioned(await svc.catalog.api(project, name), response)


@router.put("/projects/{project}/apis/{name}", tags=["apis"])
async def update_api(
    project: str,
    name: str,
    body: ApiProxy,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    expected = if_match(match)
    if expected is None:
        expected = (await svc.catalog.api(project, name)).version
    doc = await svc.catalog.update_api(
        project, name, _in_project(project, body), expected, who.username
    )
    return versioned(doc, response)


@router.delete("/projects/{project}/apis/{name}", status_code=204, tags=["apis"])
async def delete_api(
    project: str, name: str, svc: Svc, who: ApiWriter, match: IfMatch = None
) -> Response:
    await svc.catalog.delete_api(project, name, if_match(match), who.username)
    return Response(status_code=204)


@router.get("/projects/{project}/apis/{name}/revisions", tags=["apis"])
async def api_revisions(project: str, name: str, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    await svc.catalog.api(project, name)
    return await svc.deployer.api_revisions(project, name)


# deployments -------------------------------------------------------------------------------
class DeploymentRequest(Model):
    project: Slug = "default"
    api: Slug
    action: Literal["deploy", "undeploy", "rollback"] = "deploy"
    api_revision: Annotated[int | None, Field(ge=1, description="for rollback")] = None
    note: Annotated[str, Field(max_length=1000)] = ""


@router.post("/environments/{environment}/deployments", status_code=201, tags=["deployments"])
async def deploy(
    environment: str, body: DeploymentRequest, svc: Svc, who: DeployerRole
) -> dict[str, Any]:
    await svc.catalog.environment(environment)
    if body.action == "undeploy":
        return await svc.deployer.undeploy(
            environment, body.project, body.api, actor=who.username, note=body.note
        )
    if body.action == "rollback" and body.api_revision is None:
        raise ApiError(422, "validation_error", "rollback needs an api_revision", "body.api_revision")
    if body.action == "deploy" and body.api_revision is not None:
        raise ApiError(
            422, "validation_error", "deploy takes the working copy; use rollback", "body.api_revision"
        )
    return await svc.deployer.deploy(
        environment,
        body.project,
        body.api,
        actor=who.username,
        note=body.note,
        api_revision=body.api_revision,
    )


@router.get("/environments/{environment}/deployments", tags=["deployments"])
async def deployment_history(environment: str, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    await svc.catalog.environment(environment)
    return await svc.deployer.history(environment)


@router.get("/environments/{environment}/revision", tags=["deployments"])
async def current_revision(environment: str, svc: Svc, _: Reader) -> dict[str, Any]:
    current = await svc.deployer.current(environment)
    if current is None:
        raise ApiError(404, "not_found", f"nothing is deployed to {environment}")
    return current.model_dump(mode="json")


# workers -----------------------------------------------------------------------------------
@router.get("/workers", tags=["workers"])
async def list_workers(
    svc: Svc, _: Reader, environment: Annotated[str | None, Query(max_length=63)] = None
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    desired: dict[str, int | None] = {
        d.id: d.data.get("desired_revision") for d in await svc.catalog.environments()
    }
    return [
        svc.registry.view(doc, desired.get(str(doc.data.get("environment"))), now)
        for doc in await svc.registry.workers(environment)
    ]


# audit -------------------------------------------------------------------------------------
@router.get("/audit", tags=["audit"])
async def audit_log(
    svc: Svc, _: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    docs = await svc.store.find("audit")
    return [{"id": d.id, **d.data} for d in sorted(docs, key=lambda d: d.id, reverse=True)[:limit]]
