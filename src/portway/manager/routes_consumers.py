"""Routes: consumers, their credentials (shown once) and their access grants.

Every change is published to the workers at once: a new revision of each deployed environment
with the same APIs and the new consumers. The answer's ``X-Portway-Published`` header names the
revisions (``dev@7, prod@3``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from portway.config.declarative import ConsumerSpec, GrantSpec, GrantTerms
from portway.config.management.consumers import (
    ConsumerView,
    CreatedCredential,
    CredentialView,
    ImportResult,
    SecretVersionView,
)
from portway.manager import consumer_import
from portway.manager.auth import Principal
from portway.manager.consumers import (
    CredentialCreate,
    CredentialUpdate,
    RotateRequest,
    consumer_view,
    credential_view,
    secret_view,
)
from portway.manager.deps import ConsumerManager, IfMatch, Reader, Svc, if_match
from portway.manager.paging import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Oldest,
    Page,
    page_in_memory,
    paged,
)
from portway.stores.config_store import Document

router = APIRouter()
PUBLISHED_HEADER = "X-Portway-Published"

ConsumerName = Annotated[str, Path(max_length=100)]
CredentialId = Annotated[str, Path(max_length=64)]
Slug = Annotated[str, Path(max_length=63)]


def _created(doc: Document, secret: str) -> dict[str, Any]:
    """A credential with its secret, shown once (an API client's also names the version)."""
    versions = doc.data.get("secrets") or [{}]
    return {**credential_view(doc), "secret": secret, "secret_version": versions[-1].get("version")}


async def publish_now(
    svc: Svc, who: Principal, note: str, response: Response, only: str | None = None
) -> None:
    """Publish a new revision of each deployed environment (or of ``only``) at once and name
    them in the answer's ``X-Portway-Published``."""
    published = await svc.deployer.republish(who.username, note, only=only)
    response.headers[PUBLISHED_HEADER] = ", ".join(
        f"{p['environment']}@{p['env_revision']}" for p in published
    )


@router.get("/consumers", tags=["consumers"], response_model=Page[ConsumerView])
async def list_consumers(
    svc: Svc,
    _: Reader,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Oldest = "asc",
) -> Page[dict[str, Any]]:
    docs, after = await svc.consumers.page(order=order, limit=limit, cursor=cursor)
    return paged(request, response, [consumer_view(d) for d in docs], after)


@router.post("/consumers", status_code=201, tags=["consumers"], response_model=ConsumerView)
async def create_consumer(
    body: ConsumerSpec, svc: Svc, who: ConsumerManager, response: Response
) -> dict[str, Any]:
    doc = await svc.consumers.create(body, who.username)
    await publish_now(svc, who, f"consumer {body.name} created", response)
    response.headers["ETag"] = f'"{doc.version}"'
    return consumer_view(doc)


@router.post(
    "/consumers/import",
    tags=["consumers"],
    response_model=ImportResult,
    responses={200: {"content": {"text/csv": {}}, "description": "with Accept: text/csv"}},
)
async def import_consumers(
    body: consumer_import.ImportRequest,
    svc: Svc,
    who: ConsumerManager,
    request: Request,
    response: Response,
    dry_run: Annotated[bool, Query(description="check and report, store nothing")] = False,
    partial: Annotated[
        bool, Query(description="store the rows without errors even when others have some")
    ] = False,
) -> Any:
    """Create or update consumers and their credentials from a CSV or JSON file, keyed by name.
    Generated keys and secrets are in this answer once and never again; ``Accept: text/csv``
    answers the same as a CSV file (cells that a spreadsheet would run as formulas are quoted)."""
    answer = await consumer_import.run(
        svc.consumers, body, who.username, dry_run=dry_run, partial=partial
    )
    counts = answer["counts"]
    if not dry_run and (counts["created"] or counts["updated"]):
        await publish_now(
            svc, who, f"{counts['created'] + counts['updated']} consumers imported", response
        )
    headers = {"Cache-Control": "no-store"}
    if "text/csv" in request.headers.get("accept", ""):
        return Response(
            consumer_import.result_csv(answer),
            media_type="text/csv; charset=utf-8",
            headers={
                **headers,
                **{k: v for k, v in response.headers.items() if k == PUBLISHED_HEADER.lower()},
                "Content-Disposition": 'attachment; filename="consumer-import-result.csv"',
            },
        )
    response.headers.update(headers)
    return answer


@router.get("/consumers/{consumer}", tags=["consumers"], response_model=ConsumerView)
async def get_consumer(
    consumer: ConsumerName, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    doc = await svc.consumers.get(consumer)
    response.headers["ETag"] = f'"{doc.version}"'
    return consumer_view(doc)


@router.put("/consumers/{consumer}", tags=["consumers"], response_model=ConsumerView)
async def replace_consumer(
    consumer: ConsumerName,
    body: ConsumerSpec,
    svc: Svc,
    who: ConsumerManager,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    doc = await svc.consumers.replace(consumer, body, if_match(match), who.username)
    await publish_now(svc, who, f"consumer {consumer} changed", response)
    response.headers["ETag"] = f'"{doc.version}"'
    return consumer_view(doc)


@router.delete("/consumers/{consumer}", status_code=204, tags=["consumers"])
async def delete_consumer(
    consumer: ConsumerName, svc: Svc, who: ConsumerManager, match: IfMatch = None
) -> Response:
    await svc.consumers.delete(consumer, if_match(match), who.username)
    response = Response(status_code=204)
    await publish_now(svc, who, f"consumer {consumer} deleted", response)
    return response


# grants ------------------------------------------------------------------------------------
@router.get("/consumers/{consumer}/grants", tags=["consumers"], response_model=list[GrantSpec])
async def list_grants(consumer: ConsumerName, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = (await svc.consumers.get(consumer)).data.get("grants", [])
    return grants


@router.put(
    "/consumers/{consumer}/grants/{project}/{api}", tags=["consumers"], response_model=GrantSpec
)
async def put_grant(
    consumer: ConsumerName,
    project: Slug,
    api: Slug,
    body: GrantTerms,
    svc: Svc,
    who: ConsumerManager,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    """Grant the consumer access to one API proxy (or change the grant's terms)."""
    grant = GrantSpec.model_validate({**body.model_dump(), "project": project, "api": api})
    doc, stored = await svc.consumers.put_grant(consumer, grant, if_match(match), who.username)
    await publish_now(svc, who, f"grant {consumer} -> {project}/{api}", response)
    response.headers["ETag"] = f'"{doc.version}"'
    return stored.model_dump(mode="json")


@router.delete("/consumers/{consumer}/grants/{project}/{api}", status_code=204, tags=["consumers"])
async def delete_grant(
    consumer: ConsumerName,
    project: Slug,
    api: Slug,
    svc: Svc,
    who: ConsumerManager,
    match: IfMatch = None,
) -> Response:
    await svc.consumers.delete_grant(consumer, project, api, if_match(match), who.username)
    response = Response(status_code=204)
    await publish_now(svc, who, f"grant {consumer} -> {project}/{api} removed", response)
    return response


# credentials -------------------------------------------------------------------------------
@router.get(
    "/consumers/{consumer}/credentials", tags=["consumers"], response_model=list[CredentialView]
)
async def list_credentials(consumer: ConsumerName, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [credential_view(d) for d in await svc.consumers.credentials(consumer)]


@router.post(
    "/consumers/{consumer}/credentials",
    status_code=201,
    tags=["consumers"],
    response_model=CreatedCredential,
)
async def create_credential(
    consumer: ConsumerName,
    body: CredentialCreate,
    svc: Svc,
    who: ConsumerManager,
    response: Response,
) -> dict[str, Any]:
    """A new API key, basic credential or API client; ``secret`` holds the key, password or client
    secret, shown once."""
    doc, secret = await svc.consumers.add_credential(consumer, body, who.username)
    await publish_now(svc, who, f"credential for {consumer}", response)
    response.headers["Cache-Control"] = "no-store"
    return _created(doc, secret)


@router.get(
    "/consumers/{consumer}/credentials/{credential_id}",
    tags=["consumers"],
    response_model=CredentialView,
)
async def get_credential(
    consumer: ConsumerName, credential_id: CredentialId, svc: Svc, _: Reader
) -> dict[str, Any]:
    _owner, found = await svc.consumers.credential(consumer, credential_id)
    return credential_view(found)


@router.patch(
    "/consumers/{consumer}/credentials/{credential_id}",
    tags=["consumers"],
    response_model=CredentialView,
)
async def update_credential(
    consumer: ConsumerName,
    credential_id: CredentialId,
    body: CredentialUpdate,
    svc: Svc,
    who: ConsumerManager,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    """Disable or re-enable, set or clear the expiry, relabel, or change a basic password."""
    doc = await svc.consumers.update_credential(
        consumer, credential_id, body, who.username, if_match(match)
    )
    await publish_now(svc, who, f"credential {credential_id} of {consumer} changed", response)
    return credential_view(doc)


@router.post(
    "/consumers/{consumer}/credentials/{credential_id}/rotate",
    status_code=201,
    tags=["consumers"],
    response_model=CreatedCredential,
)
async def rotate_credential(
    consumer: ConsumerName,
    credential_id: CredentialId,
    body: RotateRequest,
    svc: Svc,
    who: ConsumerManager,
    response: Response,
) -> dict[str, Any]:
    """A new API key (``secret``, shown once); the old key stays valid for ``grace_seconds``. An
    API client keeps its id and gets a new secret version; older versions stay valid for
    ``grace_seconds``."""
    doc, secret = await svc.consumers.rotate_credential(consumer, credential_id, body, who.username)
    await publish_now(svc, who, f"credential {credential_id} of {consumer} rotated", response)
    response.headers["Cache-Control"] = "no-store"
    return _created(doc, secret)


@router.get(
    "/consumers/{consumer}/credentials/{credential_id}/secrets",
    tags=["consumers"],
    response_model=Page[SecretVersionView],
)
async def list_secret_versions(
    consumer: ConsumerName,
    credential_id: CredentialId,
    svc: Svc,
    _: Reader,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: Oldest = "asc",
) -> Page[dict[str, Any]]:
    """An API client's secret versions with their dates (never a secret or hash)."""
    versions = await svc.consumers.secret_versions(consumer, credential_id)
    items, after = page_in_memory(
        [secret_view(v) for v in versions],
        lambda v: f"{v['version']:08d}",
        f"secrets:{credential_id}",
        order=order,
        limit=limit,
        cursor=cursor,
    )
    return paged(request, response, items, after)


@router.delete(
    "/consumers/{consumer}/credentials/{credential_id}/secrets/{version}",
    tags=["consumers"],
    response_model=SecretVersionView,
)
async def revoke_secret_version(
    consumer: ConsumerName,
    credential_id: CredentialId,
    version: Annotated[int, Path(ge=1, le=10**9)],
    svc: Svc,
    who: ConsumerManager,
    response: Response,
) -> dict[str, Any]:
    """Revoke one secret version of an API client: it stops working at once."""
    found = await svc.consumers.revoke_secret(consumer, credential_id, version, who.username)
    await publish_now(
        svc, who, f"secret {version} of {credential_id} of {consumer} revoked", response
    )
    return secret_view(found)


@router.delete(
    "/consumers/{consumer}/credentials/{credential_id}", status_code=204, tags=["consumers"]
)
async def delete_credential(
    consumer: ConsumerName, credential_id: CredentialId, svc: Svc, who: ConsumerManager
) -> Response:
    await svc.consumers.delete_credential(consumer, credential_id, who.username)
    response = Response(status_code=204)
    await publish_now(svc, who, f"credential {credential_id} of {consumer} deleted", response)
    return response
