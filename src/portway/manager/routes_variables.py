"""Routes: the variables of an environment (``${env.NAME}`` in APIs), read by every role that
reads environments, written by environment managers; a secret value is never answered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from portway.config.management.catalog import EnvironmentVariableView
from portway.config.variables import NAME_PATTERN, VariableBody
from portway.manager.deps import EnvManager, IfMatch, Reader, Svc, if_match
from portway.manager.variables import masked
from portway.stores.config_store import Document

router = APIRouter(tags=["environment variables"])

EnvName = Annotated[str, Path(max_length=200)]
VarName = Annotated[
    str, Path(max_length=128, pattern=NAME_PATTERN, description="read by APIs as ${env.NAME}")
]


def _view(doc: Document, response: Response | None = None) -> dict[str, Any]:
    if response is not None:
        response.headers["ETag"] = f'"{doc.version}"'
    return {**masked(doc.data), "version": doc.version}


@router.get(
    "/environments/{environment}/variables",
    response_model=list[EnvironmentVariableView],
    name="list_environment_variables",
)
async def list_variables(environment: EnvName, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    await svc.catalog.environment(environment)
    return [_view(d) for d in await svc.deployer.variables.listing(environment)]


@router.get(
    "/environments/{environment}/variables/{name}",
    response_model=EnvironmentVariableView,
    name="get_environment_variable",
)
async def get_variable(
    environment: EnvName, name: VarName, svc: Svc, _: Reader, response: Response
) -> dict[str, Any]:
    await svc.catalog.environment(environment)
    return _view(await svc.deployer.variables.get(environment, name), response)


@router.put(
    "/environments/{environment}/variables/{name}",
    response_model=EnvironmentVariableView,
    name="put_environment_variable",
)
async def put_variable(
    environment: EnvName,
    name: VarName,
    body: VariableBody,
    svc: Svc,
    who: EnvManager,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    """Create or replace a variable; it takes effect with the environment's next deploy."""
    await svc.catalog.environment(environment)
    doc, _created = await svc.deployer.variables.put(
        environment, name, body, if_match(match), who.username
    )
    return _view(doc, response)


@router.delete(
    "/environments/{environment}/variables/{name}",
    status_code=204,
    name="delete_environment_variable",
)
async def delete_variable(
    environment: EnvName, name: VarName, svc: Svc, who: EnvManager, match: IfMatch = None
) -> Response:
    await svc.catalog.environment(environment)
    await svc.deployer.variables.delete(environment, name, if_match(match), who.username)
    return Response(status_code=204)
