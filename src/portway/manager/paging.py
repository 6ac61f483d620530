"""Lists of the management API, a page at a time: ``{"items": [...], "next": "<cursor>"}``.

A list answers at most ``limit`` items (default 100, at most ``MAX_LIMIT``) in id order (``order``
asc or desc; the audit log and deployment history default to newest first), and ``next``: the
cursor of the next page, or null on the last one. The next page is the same request with
``cursor=<next>``; the answer also carries it as ``Link: <…>; rel="next"``. A cursor is opaque
and only continues the list it came from (same filters, same order): any other is refused with
422 naming ``query.cursor``.

Filters on indexed fields run in the store. The few that are computed (a substring of a name,
where an API is deployed) are applied to store pages as they are read, so a page may hold fewer
items than ``limit`` only when it is the last; ``next`` may then lead to an empty last page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from portway.manager.problems import ApiError
from portway.stores.config_store import (
    ConfigStore,
    Document,
    InvalidCursor,
    Order,
    decode_cursor,
    encode_cursor,
)

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_READ_AHEAD = 200  # store page size while a computed filter skips documents

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (1 to {MAX_LIMIT})")]
Cursor = Annotated[
    str | None,
    Query(max_length=2048, description="the `next` of the previous page; omit for the first"),
]
Newest = Annotated[Order, Query(description="id order: desc (newest first) or asc")]
Oldest = Annotated[Order, Query(description="id order: asc or desc")]
Select = Callable[[Sequence[Document]], Awaitable[Sequence[Document]]]


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    next: str | None = Field(
        description="cursor of the next page (pass it as `cursor`); null on the last page"
    )


async def read_page(
    store: ConfigStore,
    collection: str,
    where: Mapping[str, Any] | None,
    *,
    order: Order,
    limit: int,
    cursor: str | None,
    select: Select | None = None,
) -> tuple[list[Document], str | None]:
    """Up to ``limit`` documents of ``collection`` matching ``where`` (in the store) and then
    ``select`` (computed on each store page), and the cursor after the last one returned."""
    try:
        if select is None:
            page = await store.page(collection, where, order=order, limit=limit, cursor=cursor)
            return page.documents, page.next
        found: list[Document] = []
        while True:
            page = await store.page(
                collection, where, order=order, limit=max(limit, _READ_AHEAD), cursor=cursor
            )
            kept = await select(page.documents)
            for doc in kept:
                found.append(doc)
                if len(found) == limit:
                    more = doc.id != page.documents[-1].id or page.next is not None
                    return found, encode_cursor(collection, where, order, doc.id) if more else None
            if page.next is None:
                return found, None
            cursor = page.next
    except InvalidCursor as exc:
        raise ApiError(
            422, "validation_error", f"query.cursor: {exc.message}", "query.cursor"
        ) from None


def page_in_memory(
    items: Sequence[T],
    key: Callable[[T], str],
    name: str,
    *,
    order: Order,
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """A page of a short list held in one document (e.g. an API client's secret versions), with
    the same cursors as store lists: ``name`` says which list a cursor belongs to."""
    ordered = sorted(items, key=key, reverse=order == "desc")
    if cursor is not None:
        try:
            last = decode_cursor(cursor, name, None, order)
        except InvalidCursor as exc:
            raise ApiError(
                422, "validation_error", f"query.cursor: {exc.message}", "query.cursor"
            ) from None
        ordered = [i for i in ordered if (key(i) > last if order == "asc" else key(i) < last)]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, encode_cursor(name, None, order, key(page[-1])) if more else None


def paged(request: Request, response: Response, items: list[T], next_cursor: str | None) -> Page[T]:
    """The page answer, with ``Link: <same request, cursor=next>; rel="next"``."""
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return Page(items=items, next=next_cursor)
