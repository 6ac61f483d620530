"""Routes: the declarative file's JSON Schema, export, and apply (with dry run and prune)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from portway.config.declarative import DeclarativeConfig, declarative_json_schema
from portway.config.management.declarative import ApplyResult
from portway.manager.auth import Permission, Principal
from portway.manager.declarative import Declarative, resolve_secret_references
from portway.manager.deps import Reader, Svc
from portway.manager.problems import ApiError, problem
from portway.manager.responses import MaskedJSONResponse

router = APIRouter()

# the permission a change of each section needs, on top of being signed in
SECTION_PERMISSIONS: dict[str, Permission] = {
    "environments": Permission.MANAGE_ENVIRONMENTS,
    "projects": Permission.WRITE_APIS,
    "global_policies": Permission.WRITE_APIS,
    "apis": Permission.WRITE_APIS,
    "consumers": Permission.MANAGE_CONSUMERS,
}


def _declarative(svc: Svc) -> Declarative:
    return Declarative(svc.catalog, svc.consumers, svc.deployer)


@router.get("/schema/declarative", tags=["declarative"])
async def declarative_schema() -> dict[str, Any]:
    """The JSON Schema of the declarative file (``portway export`` / ``portway apply -f``)."""
    return declarative_json_schema()


@router.get("/declarative/export", tags=["declarative"], response_model=DeclarativeConfig)
async def export(svc: Svc, _: Reader) -> MaskedJSONResponse:
    """Everything declarative (no secrets, users or tokens) in the file format."""
    # rendered as built: the file leaves defaults out, and re-rendering through the model would
    # write the fields its validators fill in (schemathesis checks it against the model)
    return MaskedJSONResponse(await _declarative(svc).export())


def _authorizer(who: Principal) -> Any:
    def authorize(kinds: set[str]) -> None:
        missing = sorted(
            {SECTION_PERMISSIONS[k].value for k in kinds if not who.can(SECTION_PERMISSIONS[k])}
        )
        if missing:
            raise ApiError(
                403,
                "forbidden",
                f"role {who.role.value} lacks the {', '.join(missing)} permission to apply "
                f"changes to {', '.join(sorted(kinds))}",
            )

    return authorize


@router.post("/declarative/apply", tags=["declarative"], response_model=ApplyResult)
async def apply(
    body: DeclarativeConfig,
    request: Request,
    svc: Svc,
    who: Reader,
    dry_run: Annotated[bool, Query(description="only compute the plan")] = False,
    prune: Annotated[
        bool, Query(description="delete what the file's sections do not list")
    ] = False,
) -> dict[str, Any] | JSONResponse:
    """Make the configuration equal to the file: creates, updates and (with ``prune``) deletes,
    answering the plan with a field diff per change. Idempotent: applying the same file again
    changes nothing. Each changed section needs its own permission (e.g. consumers need
    ``manage_consumers``); a dry run needs only ``read``."""
    body = resolve_secret_references(body)
    service = _declarative(svc)
    if dry_run:
        plan = await service.plan(body, prune)
        published: list[dict[str, Any]] = []
    else:
        plan, published = await service.apply(
            body, prune=prune, actor=who.username, authorize=_authorizer(who)
        )
    if plan.errors:
        first = plan.errors[0]
        return problem(
            request,
            422,
            "validation_error",
            f"{first['field']}: {first['message']}",
            list(plan.errors),
        )
    return {
        "dry_run": dry_run,
        "applied": not dry_run and bool(plan.kinds_changed()),
        "summary": plan.summary(),
        "changes": [c.view() for c in plan.changes if c.action != "unchanged"],
        "published": published,
    }
