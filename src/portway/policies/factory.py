"""The seam between revision compilation and policies: one compiled pipeline per route (an API
proxy, or one of its endpoints).

``portway.compile.routes.compile_routes`` calls ``route_pipelines(services)`` once per route and
revision, with the exact ``PipelineFactory`` signature: for the worker (``compile_runtime``) on its
real caches, for the manager's check (``portway.compile.check``) on throwaway ones."""

from __future__ import annotations

from collections.abc import Callable

from portway.config.models import ApiProxy, Endpoint
from portway.config.revision import EnvironmentRevision
from portway.policies.contract import NO_PIPELINE, Pipeline
from portway.policies.pipeline import compile_pipeline
from portway.policies.resources import PolicyServices

RoutePipelines = Callable[[ApiProxy, Endpoint | None, EnvironmentRevision], Pipeline]


def api_key(api: ApiProxy) -> str:
    return f"{api.project}/{api.name}"


def endpoint_key(api: ApiProxy, endpoint: Endpoint) -> str:
    methods = ",".join(sorted(endpoint.methods)) or "*"
    return f"{api_key(api)} {methods} {endpoint.path}"


def route_pipelines(services: PolicyServices) -> RoutePipelines:
    """A ``PipelineFactory`` for ``portway.compile.routes.compile_routes``.

    Proxy policies run around endpoint policies (request: proxy → endpoint; response and error:
    endpoint → proxy). A route without any active policy gets ``NO_PIPELINE``. Raises
    ``DeploymentError`` when a policy does not compile."""

    def factory(
        api: ApiProxy, endpoint: Endpoint | None, revision: EnvironmentRevision
    ) -> Pipeline:
        if endpoint is None:
            scopes, names, keys = [api.policies], ["proxy"], [api_key(api)]
        else:
            scopes = [api.policies, endpoint.policies]
            names = ["proxy", "endpoint"]
            keys = [api_key(api), endpoint_key(api, endpoint)]
        label = keys[-1]
        pipeline = compile_pipeline(
            scopes, revision, services, label=label, scope_names=names, scope_keys=keys
        )
        steps = pipeline.steps
        if not (steps["request"] or steps["response"] or steps["error"]):
            return NO_PIPELINE
        return pipeline

    return factory
