"""One revision, compiled into the routing table a worker serves: every API proxy and every one of
its endpoints becomes a ``Route`` carrying its policy pipeline and its API's upstream.

``compile_routes`` is the only way this happens; the worker passes its connection pools as
``upstream_for``, the manager's check (``portway.compile.check``) passes one that only builds the
backends' TLS contexts. Both get the same errors, as ``DeploymentError``."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from portway.compile.routing import EndpointMount, Mount, Router
from portway.config.models import ApiProxy, ConnectionSettings, Endpoint
from portway.config.revision import EnvironmentRevision
from portway.errors import ConfigError, DeploymentError
from portway.policies.contract import NO_PIPELINE, Pipeline

U = TypeVar("U")

PipelineFactory = Callable[[ApiProxy, Endpoint | None, EnvironmentRevision], Pipeline]
"""The one seam where compilation asks for a route's policy pipeline
(``portway.policies.factory.route_pipelines``)."""


def no_pipeline(
    api: ApiProxy, endpoint: Endpoint | None, revision: EnvironmentRevision
) -> Pipeline:
    return NO_PIPELINE


@dataclass(slots=True, frozen=True)
class Route(Generic[U]):
    """One API proxy, or one endpoint of it, as the proxy serves it."""

    api: ApiProxy
    endpoint: Endpoint | None
    pipeline: Pipeline
    upstream: U | None
    """``None`` for an API without backends (in maintenance) and in the manager's check."""
    connection: ConnectionSettings | None = None
    """The endpoint's timeouts and retries over the API's; ``None``: the API's as they are."""
    operations: tuple[Route[U], ...] = ()
    """SOAP endpoints sharing this path and methods: the worker reads the envelope and serves
    the one whose ``soap`` match it fits (``portway.policies.soap``); empty for other routes."""


def _mount_key(base_path: str) -> str:
    return "/".join("{}" if s.startswith("{") else s for s in base_path.split("/"))


def check_conflicts(revision: EnvironmentRevision) -> None:
    """Raise ``DeploymentError`` when two APIs serve the same base path (``{param}`` segments
    alike), host and method; every base path of an API (``base_path`` and ``routes``) counts."""
    seen: dict[tuple[str, str], list[tuple[str, frozenset[str]]]] = {}
    for deployed in revision.apis:
        api = deployed.api
        methods = frozenset(api.methods)
        for base_path, hosts in api.client_routes():
            for host in hosts or ["*any*"]:
                key = (host, _mount_key(base_path))
                for other, other_methods in seen.get(key, []):
                    if not methods or not other_methods or methods & other_methods:
                        where = "any host" if host == "*any*" else host
                        raise DeploymentError(
                            f"APIs {other!r} and '{api.project}/{api.name}' both serve "
                            f"{base_path} on {where}"
                        )
                seen.setdefault(key, []).append((f"{api.project}/{api.name}", methods))


def _no_upstream(api: ApiProxy) -> None:
    return None


def compile_routes(
    revision: EnvironmentRevision,
    pipelines: PipelineFactory = no_pipeline,
    upstream_for: Callable[[ApiProxy], U | None] = _no_upstream,
) -> Router[Route[U]]:
    """The routing table of ``revision``. ``upstream_for`` is called once per API that has
    backends; ``pipelines`` once per route. Raises ``DeploymentError`` naming the API (or route)
    when routes conflict, a backend cannot be set up or a policy does not compile."""
    check_conflicts(revision)
    upstreams: dict[int, U | None] = {}

    def upstream_of(api: ApiProxy) -> U | None:
        if not api.backends:
            return None
        if id(api) not in upstreams:
            try:
                upstreams[id(api)] = upstream_for(api)
            except ConfigError as exc:
                raise DeploymentError(f"{api.project}/{api.name}: {exc}") from exc
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise DeploymentError(f"{api.project}/{api.name}: backends: {exc}") from exc
        return upstreams[id(api)]

    def route_for(api: ApiProxy, endpoint: Endpoint | None) -> Route[U]:
        upstream = upstream_of(api)
        try:
            pipeline = pipelines(api, endpoint, revision)
        except DeploymentError:
            raise
        except (ValueError, KeyError) as exc:
            where = f"{api.project}/{api.name}{endpoint.path if endpoint else ''}"
            raise DeploymentError(f"{where}: policies do not compile: {exc}") from exc
        connection = None
        if endpoint is not None and endpoint.connection is not None:
            connection = endpoint.connection.applied_to(api.connection)
        return Route(api, endpoint, pipeline, upstream, connection)

    mounts: list[Mount[Route[U]]] = []
    for deployed in revision.apis:
        api = deployed.api
        endpoints: list[EndpointMount[Route[U]]] = []
        soap: dict[tuple[str, frozenset[str]], list[Route[U]]] = {}
        for ep in api.endpoints:
            if ep.soap is None:
                endpoints.append(EndpointMount(ep.path, frozenset(ep.methods), route_for(api, ep)))
            else:
                soap.setdefault((ep.path, frozenset(ep.methods)), []).append(route_for(api, ep))
        for (path, methods), operations in soap.items():
            dispatch = Route(api, None, NO_PIPELINE, upstream_of(api), None, tuple(operations))
            endpoints.append(EndpointMount(path, methods, dispatch))
        own = route_for(api, None)
        for base_path, hosts in api.client_routes():
            mounts.append(
                Mount(
                    base_path,
                    own,
                    hosts=hosts,
                    methods=frozenset(api.methods),
                    endpoints=endpoints,
                    fallthrough=api.endpoint_fallthrough,
                )
            )
    return Router(mounts)


def compile_router(revision: EnvironmentRevision) -> Router[Route[Any]]:
    """The routing table of a revision without pipelines or upstreams."""
    return compile_routes(revision)
