"""The manager's compile check: a revision is compiled as a worker compiles it (``compile_routes``
with the real policy pipelines, and the TLS context of every HTTPS backend) before it is stored or
published, so a revision a worker could not run is refused with the reason.

The pipelines are built on throwaway in-process caches: compiling touches no shared store. An API
revision is immutable, so one that compiled with the same global policies is not compiled again
(consumer republications and one-API redeploys stay cheap); the TLS contexts are built on every
check, since a CA bundle is a file that can change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from portway.compile.routes import compile_routes
from portway.config.backend_tls import backend_tls_context, tls_settings
from portway.config.models import ApiProxy, Endpoint, global_refs
from portway.config.revision import EnvironmentRevision
from portway.config.variables import RevisionVariable
from portway.errors import ConfigError, DeploymentError
from portway.policies.contract import NO_PIPELINE, Pipeline
from portway.policies.factory import route_pipelines
from portway.policies.resources import PolicyServices
from portway.stores.cache_local import LocalCache

REMEMBERED = 100_000
"""How many compiled (API revision, global policies) keys are remembered before starting over."""


class RevisionCheck:
    """Call it with a revision; raises ``DeploymentError`` (``revision N does not compile: ...``)
    when a worker could not compile it."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._compiled: set[str] = set()
        self._remembered = remembered

    def __call__(
        self,
        revision: EnvironmentRevision,
        variables: Mapping[str, RevisionVariable] | None = None,
    ) -> None:
        """``revision`` as a worker runs it (variables expanded); ``variables``: the values it
        was expanded with, part of what makes a compiled API the same one again."""
        services = PolicyServices(
            environment=revision.environment, cache=LocalCache(), local_cache=LocalCache()
        )
        compile_pipeline = route_pipelines(services)
        keys = {
            id(deployed.api): _key(deployed.api, deployed.api_revision, revision, variables or {})
            for deployed in revision.apis
        }
        contexts: set[tuple[bool, str | None]] = set()

        def pipelines(
            api: ApiProxy, endpoint: Endpoint | None, snapshot: EnvironmentRevision
        ) -> Pipeline:
            if keys[id(api)] in self._compiled:
                return NO_PIPELINE
            return compile_pipeline(api, endpoint, snapshot)

        def upstream_for(api: ApiProxy) -> None:
            for settings in tls_settings(api):
                if settings not in contexts:
                    backend_tls_context(*settings)
                    contexts.add(settings)

        try:
            compile_routes(revision, pipelines, upstream_for)
        except (ValueError, ConfigError, DeploymentError) as exc:
            raise DeploymentError(f"revision {revision.revision} does not compile: {exc}") from exc
        if len(self._compiled) + len(keys) > self._remembered:
            self._compiled.clear()
        self._compiled.update(keys.values())


def _key(
    api: ApiProxy,
    api_revision: int,
    revision: EnvironmentRevision,
    variables: Mapping[str, RevisionVariable],
) -> str:
    refs = {
        name: revision.global_policies[name].model_dump(mode="json")
        for name in sorted(global_refs(api))
        if name in revision.global_policies
    }
    return hashlib.sha256(
        json.dumps(
            [
                api.project,
                api.name,
                api_revision,
                refs,
                {name: v.value for name, v in variables.items()},
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()
