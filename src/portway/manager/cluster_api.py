"""The manager's side of the cluster protocol (``/_portway/cluster``): signed calls from workers,
signed answers to them (``SignedAnswers``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portway.cluster.messages import EnvironmentInfo, StatusAnswer, StatusReport
from portway.cluster.signing import (
    REQUEST_ID_HEADER,
    REVISION_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    sign_answer,
    valid_request_id,
    verify,
)
from portway.manager.context import Services
from portway.manager.problems import ApiError

PREFIX = "/_portway/cluster"
router = APIRouter(prefix=PREFIX, include_in_schema=False)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def signed(request: Request) -> bytes:
    """The request body, once its cluster signature checked out and its request id was never
    seen before; 401 otherwise."""
    body = await request.body()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    request_id = request.headers.get(REQUEST_ID_HEADER, "")
    if not verify(
        services(request).secret,
        request.method,
        target,
        body,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        request_id,
    ):
        raise ApiError(401, "unauthenticated", "missing or invalid cluster signature")
    guard: ReplayGuard = request.app.state.replay_guard
    if not guard.first_use(request_id):
        raise ApiError(401, "replayed", "this signed call was already received once")
    return body


Signed = Annotated[bytes, Depends(signed)]
Svc = Annotated[Services, Depends(services)]


class SignedAnswers:
    """ASGI middleware: every answer under ``/_portway/cluster`` (errors included) is signed over
    its status, body, the caller's request id and the revision number a route put in
    ``X-Portway-Revision``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        sent_request_id = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"")
        request_id = sent_request_id.decode("latin-1")
        if not valid_request_id(request_id):
            request_id = ""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() != REVISION_HEADER.lower().encode()
            ]
            revision = dict(start.get("headers", [])).get(REVISION_HEADER.lower().encode())
            signature = sign_answer(
                scope["app"].state.services.secret,
                int(start["status"]),
                request_id,
                body,
                int(revision) if revision else None,
            )
            headers += [(k.lower().encode(), v.encode()) for k, v in signature.items()]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


@router.get("/environments/{environment}")
async def environment_info(environment: str, _: Signed, svc: Svc) -> dict[str, Any]:
    doc = await svc.catalog.environment(environment)
    return EnvironmentInfo(
        name=environment, desired_revision=doc.data.get("desired_revision")
    ).model_dump()


@router.get("/environments/{environment}/revisions/{number}")
async def environment_revision(environment: str, number: int, _: Signed, svc: Svc) -> Response:
    snapshot = await svc.deployer.runnable(environment, number)
    return Response(
        snapshot.model_dump_json(),
        media_type="application/json",
        headers={REVISION_HEADER: str(snapshot.revision)},
    )


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
