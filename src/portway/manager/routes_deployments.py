"""Routes: deployments (deploy / redeploy / undeploy / rollback, one API or a batch), their
history with the per-worker result, the environment's current revision, workers, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from portway.config.management.deployments import (
    AuditRecord,
    BatchRequest,
    Deployment,
    DeploymentRequest,
    WorkerView,
)
from portway.config.revision import EnvironmentRevision
from portway.manager import audit
from portway.manager.deps import AuditReader, DeployerRole, EnvManager, Reader, Svc
from portway.manager.paging import DEFAULT_LIMIT, Cursor, Limit, Newest, Page, paged, read_page
from portway.manager.problems import ApiError
from portway.stores.config_store import Prefix

router = APIRouter()

EnvName = Annotated[str, Path(max_length=63)]


def _check(action: str, api_revision: int | None, field: str) -> None:
    if action == "rollback" and api_revision is None:
        raise ApiError(422, "validation_error", "rollback needs an api_revision", field)
    if action != "rollback" and api_revision is not None:
        raise ApiError(422, "validation_error", "only a rollback names an api_revision", field)


@router.post(
    "/environments/{environment}/deployments",
    status_code=201,
    tags=["deployments"],
    response_model=Deployment,
)
async def deploy(
    environment: EnvName, body: DeploymentRequest, svc: Svc, who: DeployerRole
) -> dict[str, Any]:
    """Deploy (or redeploy) the working copy, roll back to an earlier API revision, or undeploy.
    The answer carries each worker's result of the push."""
    await svc.catalog.environment(environment)
    _check(body.action, body.api_revision, "body.api_revision")
    return await svc.deployer.batch(
        environment,
        [(body.project, body.api, body.action, body.api_revision)],
        who.username,
        body.note,
    )


@router.post(
    "/environments/{environment}/deployments/batch",
    status_code=201,
    tags=["deployments"],
    response_model=Deployment,
)
async def deploy_batch(
    environment: EnvName, body: BatchRequest, svc: Svc, who: DeployerRole
) -> dict[str, Any]:
    await svc.catalog.environment(environment)
    for index, item in enumerate(body.items):
        _check(item.action, item.api_revision, f"body.items[{index}].api_revision")
    return await svc.deployer.batch(
        environment,
        [(i.project, i.api, i.action, i.api_revision) for i in body.items],
        who.username,
        body.note,
    )


@router.get(
    "/environments/{environment}/deployments", tags=["deployments"], response_model=Page[Deployment]
)
async def deployment_history(
    environment: EnvName,
    svc: Svc,
    _: Reader,
    request: Request,
    response: Response,
    project: Annotated[str | None, Query(max_length=63)] = None,
    api: Annotated[str | None, Query(max_length=63)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Newest = "desc",
) -> Page[dict[str, Any]]:
    """Newest first: who, when, what, the note and each worker's result."""
    await svc.catalog.environment(environment)
    rows, after = await svc.deployer.records.history(
        environment, project=project, api=api, limit=limit, cursor=cursor, order=order
    )
    return paged(request, response, rows, after)


def _redacted(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The revision as the management API shows it: credential hashes, the nonce secret,
    private keys and secret variables' values are not handed out."""
    consumers = []
    for consumer in snapshot.get("consumers", []):
        credentials = [
            {
                **c,
                "lookup": "***" if c.get("kind") == "api_key" else c.get("lookup"),
                "secret_hash": "***" if c.get("secret_hash") else None,
                "ha1": {name: "***" for name in c.get("ha1") or {}},
                "secrets": [{**v, "secret_hash": "***"} for v in c.get("secrets", [])],
            }
            for c in consumer.get("credentials", [])
        ]
        consumers.append({**consumer, "credentials": credentials})
    variables = {
        name: {**v, "value": "***"} if v.get("secret") else v
        for name, v in (snapshot.get("variables") or {}).items()
    }
    return {
        **snapshot,
        "consumers": consumers,
        "nonce_secret": "***" if snapshot.get("nonce_secret") else "",
        "signing_keys": [
            {**k, "private_key": "***" if k.get("private_key") else None}
            for k in snapshot.get("signing_keys", [])
        ],
        "variables": variables,
        # a stored revision has none (only what workers pull does); never hand them out
        "secret_values": [],
    }


@router.get(
    "/environments/{environment}/revision", tags=["deployments"], response_model=EnvironmentRevision
)
async def current_revision(environment: EnvName, svc: Svc, _: Reader) -> dict[str, Any]:
    current = await svc.deployer.current(environment)
    if current is None:
        raise ApiError(404, "not_found", f"nothing is deployed to {environment}")
    return _redacted(current.model_dump(mode="json"))


@router.get(
    "/environments/{environment}/revisions/{revision}",
    tags=["deployments"],
    response_model=EnvironmentRevision,
)
async def environment_revision(
    environment: EnvName,
    revision: Annotated[int, Path(ge=1, le=10**9)],
    svc: Svc,
    _: Reader,
) -> dict[str, Any]:
    await svc.catalog.environment(environment)
    snapshot = await svc.deployer.revision(environment, revision)
    return _redacted(snapshot.model_dump(mode="json"))


# workers -----------------------------------------------------------------------------------
async def _desired(svc: Svc) -> dict[str, int | None]:
    return await svc.catalog.desired_revisions()


@router.get("/workers", tags=["workers"], response_model=list[WorkerView])
async def list_workers(
    svc: Svc, _: Reader, environment: Annotated[str | None, Query(max_length=63)] = None
) -> list[dict[str, Any]]:
    """Per worker: environment, address, state (up / down / unreachable / unknown), served and
    desired revision, time to converge, last report and the manager's last probe."""
    now = datetime.now(UTC)
    desired = await _desired(svc)
    return [
        svc.registry.view(doc, desired.get(str(doc.data.get("environment"))), now)
        for doc in await svc.registry.workers(environment)
    ]


@router.get("/workers/{worker_id:path}", tags=["workers"], response_model=WorkerView)
async def get_worker(worker_id: str, svc: Svc, _: Reader) -> dict[str, Any]:
    doc = await svc.store.get("workers", worker_id)
    if doc is None:
        raise ApiError(404, "not_found", f"workers/{worker_id} not found")
    desired = await _desired(svc)
    return svc.registry.view(doc, desired.get(str(doc.data.get("environment"))))


@router.delete("/workers/{worker_id:path}", status_code=204, tags=["workers"])
async def forget_worker(worker_id: str, svc: Svc, who: EnvManager) -> Response:
    """Forget a decommissioned worker (it registers again if it ever reports)."""
    doc = await svc.registry.forget(worker_id)
    await audit.record(
        svc.store,
        who.username,
        "worker.forget",
        f"workers/{worker_id}",
        {"environment": doc.data.get("environment"), "address": doc.data.get("address")},
        None,
    )
    return Response(status_code=204)


# audit -------------------------------------------------------------------------------------
@router.get("/audit", tags=["audit"], response_model=Page[AuditRecord])
async def audit_log(
    svc: Svc,
    _: AuditReader,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Newest = "desc",
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    target_prefix: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[dict[str, Any]]:
    """Newest first: who changed what and when, with the old/new diff (secrets masked). Every
    filter is served by an index."""
    where: dict[str, Any] = {"actor": actor, "action": action}
    where = {k: v for k, v in where.items() if v}
    if target_prefix:
        where["target"] = Prefix(target_prefix)
    docs, after = await read_page(
        svc.store, "audit", where, order=order, limit=limit, cursor=cursor
    )
    return paged(request, response, [{"id": d.id, **d.data} for d in docs], after)
