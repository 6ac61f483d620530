"""Routes: environments, projects, API proxies (and import), endpoints, policies, globals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from portway.config.declarative import GlobalPolicy
from portway.config.management.catalog import (
    ApiProxyView,
    ApiRevisionRow,
    ApiStatus,
    ApiSummary,
    EndpointRow,
    EndpointView,
    EnvironmentView,
    GlobalPolicyDetail,
    GlobalPolicyView,
    ImportedApi,
    PolicyOrder,
    ProjectView,
)
from portway.config.models import ApiProxy, Endpoint, Environment, PolicyLists, PolicySpec, Project
from portway.errors import ConfigError
from portway.manager import editing, openapi_import, wsdl_import
from portway.manager.catalog import api_key
from portway.manager.context import Services
from portway.manager.deps import (
    ApiWriter,
    EnvManager,
    IfMatch,
    Reader,
    Svc,
    if_match,
    versioned,
)
from portway.manager.editing import Phase
from portway.manager.paging import DEFAULT_LIMIT, Cursor, Limit, Oldest, Page, paged
from portway.manager.problems import ApiError
from portway.manager.validation import validate_policy
from portway.manager.versioned_routes import VersionedResource, versioned_routes
from portway.policies.secrets import keep_secrets
from portway.stores.config_store import Document

router = APIRouter()

Name = Annotated[str, Path(max_length=200)]
Position = Annotated[
    int | None, Query(ge=0, le=100000, description="insert before this index; default: at the end")
]


def _rows(docs: list[Document]) -> list[dict[str, Any]]:
    return [{**d.data, "version": d.version} for d in docs]


# environments and projects ----------------------------------------------------------------
async def _delete_environment(svc: Services, name: str, expected: int | None, actor: str) -> None:
    current = await svc.deployer.current(name)
    deployed = [f"{d.api.project}/{d.api.name}" for d in (current.apis if current else [])]
    await svc.catalog.delete_environment(name, expected, actor, deployed)
    await svc.deployer.variables.delete_all(name)


def _catalog_resource(
    path: str,
    key: str,
    singular: str,
    plural: str,
    body: type[BaseModel],
    row: type[BaseModel],
    writer: Any,
    **overrides: Any,
) -> VersionedResource:
    """A catalog resource whose ``Catalog`` methods follow the naming ``{plural}()``,
    ``{singular}(name)``, ``create_{singular}``, ``update_{singular}``, ``delete_{singular}``."""

    def method(svc: Services, name: str) -> Any:
        return getattr(svc.catalog, name)

    calls: dict[str, Any] = {
        "all": lambda svc: method(svc, plural)(),
        "one": lambda svc, name: method(svc, singular)(name),
        "create": lambda svc, body, actor: method(svc, f"create_{singular}")(body, actor),
        "update": lambda svc, name, body, expected, actor: method(svc, f"update_{singular}")(
            name, body, expected, actor
        ),
        "delete": lambda svc, name, expected, actor: method(svc, f"delete_{singular}")(
            name, expected, actor
        ),
        "view": row,
    }
    return VersionedResource(
        collection_path=path,
        key=key,
        tag=path.strip("/").replace("-", " "),
        singular=singular,
        plural=plural,
        body=body,
        row=row,
        writer=writer,
        **(calls | overrides),
    )


versioned_routes(
    router,
    _catalog_resource(
        "/environments",
        "environment",
        "environment",
        "environments",
        Environment,
        EnvironmentView,
        EnvManager,
        delete=_delete_environment,
    ),
)
versioned_routes(
    router,
    _catalog_resource(
        "/projects", "project", "project", "projects", Project, ProjectView, ApiWriter
    ),
)


# API proxies -------------------------------------------------------------------------------
def _in_project(project: str, body: ApiProxy) -> ApiProxy:
    if "project" in body.model_fields_set and body.project != project:
        raise ApiError(
            422,
            "validation_error",
            f"must equal the project in the path ({project})",
            "body.project",
        )
    return body.model_copy(update={"project": project})


def _summary(doc: Document, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    data = doc.data
    return {
        "project": data["project"],
        "name": data["name"],
        "description": data.get("description", ""),
        "base_path": data["base_path"],
        "hosts": data.get("hosts", []),
        "backends": len(data.get("backends", [])),
        "endpoints": len(data.get("endpoints", [])),
        "maintenance": bool(data.get("maintenance")),
        "version": doc.version,
        "deployments": [
            {
                "environment": d["environment"],
                "api_revision": d["api_revision"],
                "redeploy_required": d["redeploy_required"],
            }
            for d in deployments
        ],
        "redeploy_required": any(d["redeploy_required"] for d in deployments),
    }


@router.get("/apis", tags=["apis"], response_model=Page[ApiSummary])
async def search_apis(
    svc: Svc,
    _: Reader,
    request: Request,
    response: Response,
    project: Annotated[str | None, Query(max_length=63)] = None,
    name_contains: Annotated[str | None, Query(max_length=100)] = None,
    base_path_prefix: Annotated[str | None, Query(max_length=2000)] = None,
    environment: Annotated[
        str | None, Query(max_length=63, description="deployed to this environment")
    ] = None,
    redeploy_required: Annotated[bool | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Oldest = "asc",
) -> Page[dict[str, Any]]:
    """API proxies of every project as summaries (by ``project/name``), with where each is
    deployed."""
    global_now = await svc.catalog.global_specs()
    status: dict[str, list[dict[str, Any]]] = {}

    async def deployed_as_asked(docs: Sequence[Document]) -> list[Document]:
        status.update(await svc.deployer.api_status(docs, global_now))
        rows = {d.id: _summary(d, status[d.id]) for d in docs}
        return [
            d
            for d in docs
            if (
                environment is None
                or any(x["environment"] == environment for x in rows[d.id]["deployments"])
            )
            and (redeploy_required is None or rows[d.id]["redeploy_required"] == redeploy_required)
        ]

    computed = environment is not None or redeploy_required is not None
    docs, after = await svc.catalog.api_page(
        project=project,
        name_contains=name_contains,
        base_path_prefix=base_path_prefix,
        select=deployed_as_asked if computed else None,
        order=order,
        limit=limit,
        cursor=cursor,
    )
    if not computed:
        status = await svc.deployer.api_status(docs, global_now)
    return paged(request, response, [_summary(d, status[d.id]) for d in docs], after)


@router.get("/projects/{project}/apis", tags=["apis"], response_model=Page[ApiProxyView])
async def list_apis(
    project: Name,
    svc: Svc,
    _: Reader,
    request: Request,
    response: Response,
    name_contains: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Oldest = "asc",
) -> Page[dict[str, Any]]:
    await svc.catalog.project(project)
    docs, after = await svc.catalog.api_page(
        project=project, name_contains=name_contains, order=order, limit=limit, cursor=cursor
    )
    return paged(request, response, _rows(docs), after)


@router.post(
    "/projects/{project}/apis", status_code=201, tags=["apis"], response_model=ApiProxyView
)
async def create_api(
    project: Name, body: ApiProxy, svc: Svc, who: ApiWriter, response: Response
) -> dict[str, Any]:
    doc = await svc.catalog.create_api(_in_project(project, body), who.username)
    response.headers["Location"] = f"/api/v1/projects/{project}/apis/{body.name}"
    return versioned(doc, response)


@router.post(
    "/projects/{project}/apis/import",
    status_code=201,
    tags=["apis"],
    response_model=ImportedApi,
    responses={200: {"model": ImportedApi, "description": "dry run: built and validated only"}},
)
async def import_api(
    project: Name,
    body: openapi_import.ImportRequest,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    dry_run: Annotated[bool, Query(description="build and validate, store nothing")] = False,
) -> dict[str, Any]:
    """Create an API proxy from an OpenAPI 3.x / Swagger 2.0 document (given or at a URL)."""
    await svc.catalog.project(project)
    raw, field = await _import_source(svc, body.url, body.document)
    document = openapi_import.parse_document(raw, field)
    api, warnings = openapi_import.build_api(document, body, project)
    return await _store_import(svc, who.username, api, warnings, response, dry_run)


async def _import_source(svc: Services, url: str | None, document: Any) -> tuple[Any, str]:
    """The document to import and the field it came from: fetched from ``url`` (size, time
    and address rules of ``openapi_import.fetch_document``) or given, within the import cap."""
    settings = svc.settings
    if url is not None:
        fetched = await openapi_import.fetch_document(
            url,
            max_bytes=settings.import_max_bytes,
            seconds=settings.import_timeout,
            allow_private=settings.import_allow_private_hosts,
            allowed=settings.import_allow_cidrs,
        )
        return fetched, "body.url"
    if isinstance(document, str) and len(document.encode()) > settings.import_max_bytes:
        raise openapi_import.too_large(settings.import_max_bytes, "body.document")
    return document, "body.document"


async def _store_import(
    svc: Services,
    username: str,
    api: ApiProxy,
    warnings: list[str],
    response: Response,
    dry_run: bool,
) -> dict[str, Any]:
    svc.catalog.check_backends(api)
    if dry_run:
        response.status_code = 200
        return {**api.model_dump(mode="json"), "version": None, "warnings": warnings}
    doc = await svc.catalog.create_api(api, username)
    response.headers["Location"] = f"/api/v1/projects/{api.project}/apis/{api.name}"
    return {**versioned(doc, response), "warnings": warnings}


@router.post(
    "/projects/{project}/apis/import/wsdl",
    status_code=201,
    tags=["apis"],
    response_model=ImportedApi,
    responses={200: {"model": ImportedApi, "description": "dry run: built and validated only"}},
)
async def import_wsdl(
    project: Name,
    body: wsdl_import.WsdlImportRequest,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    dry_run: Annotated[bool, Query(description="build and validate, store nothing")] = False,
) -> dict[str, Any]:
    """Create a SOAP API proxy from a WSDL 1.1 document (given or at a URL): one endpoint per
    operation, matched by SOAPAction and Body element."""
    await svc.catalog.project(project)
    raw, field = await _import_source(svc, body.url, body.document)
    api, warnings = wsdl_import.build_api(raw, body, project, field)
    return await _store_import(svc, who.username, api, warnings, response, dry_run)


@router.get("/projects/{project}/apis/{name}", tags=["apis"], response_model=ApiProxyView)
async def get_api(
    project: Name, name: Name, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    return versioned(await svc.catalog.api(project, name), response)


@router.put("/projects/{project}/apis/{name}", tags=["apis"], response_model=ApiProxyView)
async def update_api(
    project: Name,
    name: Name,
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


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


@router.patch("/projects/{project}/apis/{name}", tags=["apis"], response_model=ApiProxyView)
async def patch_api(
    project: Name,
    name: Name,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    body: Annotated[
        dict[str, Any],
        Body(description='JSON merge patch (RFC 7396), e.g. {"maintenance": true}'),
    ],
    match: IfMatch = None,
) -> dict[str, Any]:
    for fixed in ("name", "project"):
        if fixed in body:
            raise ConfigError("cannot be changed; create a new API proxy instead", f"body.{fixed}")

    def change(data: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = _merge_patch(data, body)
        return patched

    doc = await svc.catalog.modify_api(project, name, change, if_match(match), who.username)
    return versioned(doc, response)


@router.delete("/projects/{project}/apis/{name}", status_code=204, tags=["apis"])
async def delete_api(
    project: Name, name: Name, svc: Svc, who: ApiWriter, match: IfMatch = None
) -> Response:
    deployed = await svc.deployer.deployed_in(project, name)
    await svc.catalog.delete_api(project, name, if_match(match), who.username, deployed)
    return Response(status_code=204)


@router.get(
    "/projects/{project}/apis/{name}/revisions", tags=["apis"], response_model=list[ApiRevisionRow]
)
async def api_revisions(project: Name, name: Name, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    await svc.catalog.api(project, name)
    return await svc.deployer.api_revisions(project, name)


@router.get(
    "/projects/{project}/apis/{name}/revisions/{revision}", tags=["apis"], response_model=ApiProxy
)
async def api_revision(
    project: Name,
    name: Name,
    revision: Annotated[int, Path(ge=1, le=10**9)],
    svc: Svc,
    _: Reader,
) -> dict[str, Any]:
    return await svc.deployer.api_revision_document(project, name, revision)


@router.get("/projects/{project}/apis/{name}/status", tags=["apis"], response_model=ApiStatus)
async def api_status(project: Name, name: Name, svc: Svc, _: Reader) -> dict[str, Any]:
    """Where the API is deployed and whether each environment needs a redeploy (and why)."""
    doc = await svc.catalog.api(project, name)
    status = await svc.deployer.api_status([doc], await svc.catalog.global_specs())
    deployments = status[doc.id]
    return {
        "project": project,
        "name": name,
        "version": doc.version,
        "deployments": deployments,
        "redeploy_required": any(d["redeploy_required"] for d in deployments),
    }


# endpoints ---------------------------------------------------------------------------------
Index = Annotated[int, Path(ge=0, le=100000, description="position in the proxy's endpoints")]


def _endpoint_view(doc: Document, index: int, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{doc.version}"'
    return {"index": index, **doc.data["endpoints"][index], "api_version": doc.version}


@router.get(
    "/projects/{project}/apis/{name}/endpoints",
    tags=["endpoints"],
    response_model=list[EndpointRow],
)
async def list_endpoints(
    project: Name, name: Name, svc: Svc, _: Reader, response: Response
) -> list[dict[str, Any]]:
    doc = await svc.catalog.api(project, name)
    response.headers["ETag"] = f'"{doc.version}"'
    return [{"index": i, **e} for i, e in enumerate(doc.data.get("endpoints", []))]


@router.post(
    "/projects/{project}/apis/{name}/endpoints",
    status_code=201,
    tags=["endpoints"],
    response_model=EndpointView,
)
async def add_endpoint(
    project: Name,
    name: Name,
    body: Endpoint,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    position: Position = None,
    match: IfMatch = None,
) -> dict[str, Any]:
    doc = await svc.catalog.modify_api(
        project,
        name,
        lambda data: editing.add_endpoint(data, body, position),
        if_match(match),
        who.username,
    )
    count = len(doc.data["endpoints"])
    index = count - 1 if position is None else min(position, count - 1)
    return _endpoint_view(doc, index, response)


@router.get(
    "/projects/{project}/apis/{name}/endpoints/{index}",
    tags=["endpoints"],
    response_model=EndpointView,
)
async def get_endpoint(
    project: Name, name: Name, index: Index, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    doc = await svc.catalog.api(project, name)
    editing.endpoint_at(dict(doc.data), index)
    return _endpoint_view(doc, index, response)


@router.put(
    "/projects/{project}/apis/{name}/endpoints/{index}",
    tags=["endpoints"],
    response_model=EndpointView,
)
async def replace_endpoint(
    project: Name,
    name: Name,
    index: Index,
    body: Endpoint,
    svc: Svc,
    who: ApiWriter,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    doc = await svc.catalog.modify_api(
        project,
        name,
        lambda data: editing.replace_endpoint(data, index, body),
        if_match(match),
        who.username,
    )
    return _endpoint_view(doc, index, response)


@router.delete(
    "/projects/{project}/apis/{name}/endpoints/{index}", status_code=204, tags=["endpoints"]
)
async def delete_endpoint(
    project: Name, name: Name, index: Index, svc: Svc, who: ApiWriter, match: IfMatch = None
) -> Response:
    await svc.catalog.modify_api(
        project,
        name,
        lambda data: editing.remove_endpoint(data, index),
        if_match(match),
        who.username,
    )
    return Response(status_code=204)


# policies ----------------------------------------------------------------------------------
def _proxy_scope() -> int | None:
    return None


def _endpoint_scope(index: Index) -> int | None:
    return index


def _policy_routes(prefix: str, scope_dependency: Callable[..., int | None], label: str) -> None:
    """Register the policy routes of one scope (the proxy, or one endpoint)."""
    Scope = Annotated[int | None, Depends(scope_dependency)]
    base = f"/projects/{{project}}/apis/{{name}}{prefix}"
    tags: list[str | Any] = ["policies"]

    async def list_policies(
        project: Name, name: Name, scope: Scope, svc: Svc, _: Reader, response: Response
    ) -> dict[str, Any]:
        doc = await svc.catalog.api(project, name)
        response.headers["ETag"] = f'"{doc.version}"'
        lists = editing.policy_lists(dict(doc.data), scope)
        return {phase: lists[phase] for phase in editing.PHASES}

    async def add_policy(
        project: Name,
        name: Name,
        phase: Phase,
        scope: Scope,
        body: PolicySpec,
        svc: Svc,
        who: ApiWriter,
        response: Response,
        position: Position = None,
        match: IfMatch = None,
    ) -> dict[str, Any]:
        body = PolicySpec.model_validate(keep_secrets(body.model_dump(mode="json"), None, "body"))
        validate_policy(body, "body", phase=phase, global_policies=await svc.catalog.global_specs())
        doc = await svc.catalog.modify_api(
            project,
            name,
            lambda data: editing.add_policy(data, scope, phase, body, position),
            if_match(match),
            who.username,
        )
        response.headers["ETag"] = f'"{doc.version}"'
        return editing.get_policy(dict(doc.data), scope, phase, body.name)

    async def get_policy(
        project: Name,
        name: Name,
        phase: Phase,
        policy: Name,
        scope: Scope,
        svc: Svc,
        _: Reader,
        response: Response,
    ) -> dict[str, Any]:
        doc = await svc.catalog.api(project, name)
        response.headers["ETag"] = f'"{doc.version}"'
        return editing.get_policy(dict(doc.data), scope, phase, policy)

    async def replace_policy(
        project: Name,
        name: Name,
        phase: Phase,
        policy: Name,
        scope: Scope,
        body: PolicySpec,
        svc: Svc,
        who: ApiWriter,
        response: Response,
        match: IfMatch = None,
    ) -> dict[str, Any]:
        stored = editing.get_policy(
            dict((await svc.catalog.api(project, name)).data), scope, phase, policy
        )
        body = PolicySpec.model_validate(keep_secrets(body.model_dump(mode="json"), stored, "body"))
        validate_policy(body, "body", phase=phase, global_policies=await svc.catalog.global_specs())
        doc = await svc.catalog.modify_api(
            project,
            name,
            lambda data: editing.replace_policy(data, scope, phase, policy, body),
            if_match(match),
            who.username,
        )
        response.headers["ETag"] = f'"{doc.version}"'
        return editing.get_policy(dict(doc.data), scope, phase, body.name)

    async def delete_policy(
        project: Name,
        name: Name,
        phase: Phase,
        policy: Name,
        scope: Scope,
        svc: Svc,
        who: ApiWriter,
        match: IfMatch = None,
    ) -> Response:
        await svc.catalog.modify_api(
            project,
            name,
            lambda data: editing.remove_policy(data, scope, phase, policy),
            if_match(match),
            who.username,
        )
        return Response(status_code=204)

    async def reorder_policies(
        project: Name,
        name: Name,
        phase: Phase,
        scope: Scope,
        body: PolicyOrder,
        svc: Svc,
        who: ApiWriter,
        response: Response,
        match: IfMatch = None,
    ) -> list[dict[str, Any]]:
        doc = await svc.catalog.modify_api(
            project,
            name,
            lambda data: editing.reorder_policies(data, scope, phase, body.names),
            if_match(match),
            who.username,
        )
        response.headers["ETag"] = f'"{doc.version}"'
        result: list[dict[str, Any]] = editing.policy_lists(dict(doc.data), scope)[phase]
        return result

    # the annotations are strings (future import); give FastAPI this scope's real dependency
    for handler in (
        list_policies,
        add_policy,
        get_policy,
        replace_policy,
        delete_policy,
        reorder_policies,
    ):
        handler.__annotations__["scope"] = Scope

    router.add_api_route(
        f"{base}/policies",
        list_policies,
        methods=["GET"],
        tags=tags,
        name=f"list_{label}_policies",
        response_model=PolicyLists,
    )
    router.add_api_route(
        f"{base}/policies/{{phase}}",
        add_policy,
        methods=["POST"],
        status_code=201,
        tags=tags,
        name=f"add_{label}_policy",
        response_model=PolicySpec,
    )
    router.add_api_route(
        f"{base}/policies/{{phase}}/{{policy}}",
        get_policy,
        methods=["GET"],
        tags=tags,
        name=f"get_{label}_policy",
        response_model=PolicySpec,
    )
    router.add_api_route(
        f"{base}/policies/{{phase}}/{{policy}}",
        replace_policy,
        methods=["PUT"],
        tags=tags,
        name=f"replace_{label}_policy",
        response_model=PolicySpec,
    )
    router.add_api_route(
        f"{base}/policies/{{phase}}/{{policy}}",
        delete_policy,
        methods=["DELETE"],
        status_code=204,
        tags=tags,
        name=f"delete_{label}_policy",
    )
    router.add_api_route(
        f"{base}/policy-order/{{phase}}",
        reorder_policies,
        methods=["PUT"],
        tags=tags,
        name=f"reorder_{label}_policies",
        response_model=list[PolicySpec],
    )


_policy_routes("", _proxy_scope, "proxy")
_policy_routes("/endpoints/{index}", _endpoint_scope, "endpoint")


# global policies ---------------------------------------------------------------------------
async def _global_view(svc: Services, doc: Document) -> dict[str, Any]:
    """The policy, the entries that refer to it, and where its users need a redeploy."""
    users = await svc.catalog.users_of_global(doc.id)
    keys = {api_key(u["project"], u["api"]) for u in users}
    docs = [await svc.catalog.api(*key.split("/", 1)) for key in sorted(keys)]
    status = await svc.deployer.api_status(docs, await svc.catalog.global_specs())
    stale = [
        {
            "project": key.split("/", 1)[0],
            "api": key.split("/", 1)[1],
            "environment": d["environment"],
        }
        for key, rows in status.items()
        for d in rows
        if doc.id in d["changed_global_policies"]
    ]
    return {**doc.data, "version": doc.version, "used_by": users, "redeploy_required": stale}


versioned_routes(
    router,
    _catalog_resource(
        "/global-policies",
        "name",
        "global_policy",
        "global_policies",
        GlobalPolicy,
        GlobalPolicyView,
        ApiWriter,
        view=GlobalPolicyDetail,
        render=_global_view,
    ),
)
