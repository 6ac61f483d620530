"""One generic set of routes for a versioned resource: list, create, get, put and delete.

A resource of this shape is stored as one document named by a path parameter; every answer
carries its version as the ``ETag``, a write may name the version it read in ``If-Match`` (409
when stale) and the service it calls records the audit entry. ``versioned_routes`` registers
the five operations for a ``VersionedResource`` with its models and permissions, so each
resource declares only what differs (its service calls and its view).

The module keeps real (not postponed) annotations: FastAPI reads each handler's parameters, and
the body model and permission differ per resource, so they are set on the handlers here.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from portway.manager.context import Services
from portway.manager.deps import IfMatch, Reader, Svc, if_match
from portway.stores.config_store import Document

Render = Callable[[Services, Document], Awaitable[dict[str, Any]]]


async def plain_view(svc: Services, doc: Document) -> dict[str, Any]:
    """The stored document and its version."""
    return {**doc.data, "version": doc.version}


@dataclass(frozen=True, slots=True)
class VersionedResource:
    collection_path: str  # e.g. "/environments"
    key: str  # the path parameter naming one, e.g. "environment"
    tag: str
    singular: str  # used in the operations' names, e.g. "environment"
    plural: str
    body: type[BaseModel]  # what create and put take
    row: type[BaseModel]  # a list item, and the answer to create
    view: type[BaseModel]  # what get and put answer (``render``)
    writer: Any  # the permission dependency of writes, e.g. deps.EnvManager
    all: Callable[[Services], Awaitable[list[Document]]]
    one: Callable[[Services, str], Awaitable[Document]]
    create: Callable[[Services, Any, str], Awaitable[Document]]
    update: Callable[[Services, str, Any, int | None, str], Awaitable[Document]]
    delete: Callable[[Services, str, int | None, str], Awaitable[None]]
    render: Render = plain_view  # the answer of get and put


def versioned_routes(router: APIRouter, resource: VersionedResource) -> None:
    """Register list, create, get, put and delete of ``resource`` on ``router``."""
    Key = Annotated[str, Path(alias=resource.key, max_length=200)]
    item_path = f"{resource.collection_path}/{{{resource.key}}}"
    tags: list[Any] = [resource.tag]

    async def list_all(svc: Svc, _: Reader) -> list[dict[str, Any]]:
        return [await plain_view(svc, d) for d in await resource.all(svc)]

    async def create(body: Any, svc: Svc, who: Any, response: Response) -> dict[str, Any]:
        doc = await resource.create(svc, body, who.username)
        response.headers["ETag"] = f'"{doc.version}"'
        return await plain_view(svc, doc)

    async def get(key: Key, svc: Svc, _: Reader, response: Response) -> dict[str, Any]:
        doc = await resource.one(svc, key)
        response.headers["ETag"] = f'"{doc.version}"'
        return await resource.render(svc, doc)

    async def put(
        key: Key, body: Any, svc: Svc, who: Any, response: Response, match: IfMatch = None
    ) -> dict[str, Any]:
        doc = await resource.update(svc, key, body, if_match(match), who.username)
        response.headers["ETag"] = f'"{doc.version}"'
        return await resource.render(svc, doc)

    async def delete(key: Key, svc: Svc, who: Any, match: IfMatch = None) -> Response:
        await resource.delete(svc, key, if_match(match), who.username)
        return Response(status_code=204)

    handlers: tuple[Callable[..., Any], ...] = (create, put, delete)
    for handler in handlers:
        handler.__annotations__["who"] = resource.writer
        if handler is not delete:
            handler.__annotations__["body"] = resource.body

    singular, plural = resource.singular, resource.plural
    operations: tuple[tuple[str, Callable[..., Any], str, int, str, Any], ...] = (
        (resource.collection_path, list_all, "GET", 200, f"list_{plural}", list[resource.row]),  # type: ignore[name-defined]
        (resource.collection_path, create, "POST", 201, f"create_{singular}", resource.row),
        (item_path, get, "GET", 200, f"get_{singular}", resource.view),
        (item_path, put, "PUT", 200, f"update_{singular}", resource.view),
        (item_path, delete, "DELETE", 204, f"delete_{singular}", None),
    )
    for path, handler, method, status, name, model in operations:
        router.add_api_route(
            path,
            handler,
            methods=[method],
            status_code=status,
            tags=tags,
            name=name,
            response_model=model,
        )
