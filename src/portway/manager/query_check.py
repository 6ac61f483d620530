"""Unknown query parameters are errors: a misspelt filter (``?projct=x``) must not silently list
everything. ``refuse_unknown_query`` compares the request's query keys with the ones the route
(and its dependencies) declare. Every management route depends on ``portway.manager.deps.
query_check``, which runs it at once on the routes anyone may call and after authentication on
the others, so an anonymous request is a 401 whatever its query."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_declared_by_route: dict[int, frozenset[str]] = {}


def dependants(root: Dependant) -> Iterator[Dependant]:
    """``root`` and every dependency under it."""
    yield root
    for sub in root.dependencies:
        yield from dependants(sub)


def _declared(dependant: Dependant) -> frozenset[str]:
    return frozenset(field.alias for d in dependants(dependant) for field in d.query_params)


def refuse_unknown_query(request: Request) -> None:
    """A 422 naming each query parameter the request's route does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    declared = _declared_by_route.get(id(route))
    if declared is None:
        declared = _declared_by_route[id(route)] = _declared(route.dependant)
    unknown = sorted({key for key in request.query_params if key not in declared})
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "unknown query parameter"
                    + (f" (this route takes: {', '.join(sorted(declared))})" if declared else ""),
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )
