"""The manager's side of the cluster protocol (``/_portway/cluster``): signed calls from workers."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from portway.cluster.messages import EnvironmentInfo, StatusAnswer, StatusReport
from portway.cluster.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from portway.manager.context import Services
from portway.manager.problems import ApiError

router = APIRouter(prefix="/_portway/cluster", include_in_schema=False)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def signed(request: Request) -> bytes:
    """The request body, once its cluster signature checked out; 401 otherwise."""
    body = await request.body()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not verify(
        services(request).secret,
        request.method,
        target,
        body,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
    ):
        raise ApiError(401, "unauthenticated", "missing or invalid cluster signature")
    return body


Signed = Annotated[bytes, Depends(signed)]
Svc = Annotated[Services, Depends(services)]


@router.get("/environments/{environment}")
async def environment_info(environment: str, _: Signed, svc: Svc) -> dict[str, Any]:
    doc = await svc.catalog.environment(environment)
    return EnvironmentInfo(
        name=environment, desired_revision=doc.data.get("desired_revision")
    ).model_dump()


@router.get("/environments/{environment}/revisions/{number}")
async def environment_revision(environment: str, number: int, _: Signed, svc: Svc) -> Response:
    snapshot = await svc.deployer.revision(environment, number)
    return Response(snapshot.model_dump_json(), media_type="application/json")


@router.post("/workers/{worker_id:path}/status")
async def worker_status(worker_id: str, body: Signed, svc: Svc) -> dict[str, Any]:
    if not 0 < len(worker_id) <= 200:
        raise ApiError(
            422, "validation_error", "worker id must have 1..200 characters", "worker_id"
        )
    report = StatusReport.model_validate(json.loads(body or b"{}"))
    env = await svc.catalog.environment(report.environment)
    desired = env.data.get("desired_revision")
    await svc.registry.report(worker_id, report, desired)
    return StatusAnswer(desired_revision=desired).model_dump()
