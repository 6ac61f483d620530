"""Deployments: build an environment revision, validate it whole, push it, record the answers.

Every deploy, undeploy or rollback produces a new immutable ``EnvironmentRevision`` (numbered per
environment). It is stored, then recorded (a ``pending`` deployment record and its audit entry),
and only then does the environment's ``desired_revision`` move to it with a compare-and-set; every
worker of the environment is told concurrently (push) and the record gets the answers
(``published``). A worker that misses the push learns the desired revision from the answer to its
next status report (pull), so the environment converges. A manager stopped between the steps
leaves a pending record; ``reconcile`` settles it on start (``interrupted`` if the pointer moved,
``failed`` if not), so no revision is ever live without a record.

A revision carries, besides its APIs, the global policies they refer to and the consumers. Global
policies are snapshotted when an API is deployed or rolled back (so a changed global policy takes
effect on the next deploy to that environment and marks its users "redeploy required" until then);
consumers are always current: a change to a consumer, credential or grant publishes a new revision
of every environment with the same APIs (``republish``).

This module orchestrates; the concerns live beside it: ``revision_store`` (environment and API
revisions in the store), ``publishing`` (compile check and push to workers) and
``deployment_history`` (records, their settlement on start, the history view).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portway.compile.check import RevisionCheck
from portway.config.models import PolicySpec, global_refs
from portway.config.revision import (
    ConsumerSnapshot,
    DeployedApi,
    EnvironmentRevision,
    SigningKeySnapshot,
    expand_apis,
    referenced_variables,
)
from portway.config.variables import RevisionVariable, scrubbed
from portway.errors import ConfigError, Conflict, DeploymentError, NotFound
from portway.manager import audit
from portway.manager.catalog import Catalog, api_key
from portway.manager.deployment_history import (
    FAILED,
    PENDING,
    PUBLISHED,
    DeploymentHistory,
    deployment_id,
)
from portway.manager.publishing import Publisher
from portway.manager.registry import WorkerRegistry
from portway.manager.revision_store import ApiRevisions, EnvironmentRevisions
from portway.manager.validation import validate_environment_apis
from portway.manager.variables import EnvironmentVariables
from portway.manager.worker_client import WorkerClient
from portway.stores.config_store import ConfigStore, Document

ConsumerSource = Callable[[str], Awaitable[list[ConsumerSnapshot]]]
KeySource = Callable[[str], Awaitable[list[SigningKeySnapshot]]]


@dataclass(frozen=True, slots=True)
class Change:
    """One API's part of a deployment: ``deployed`` is None for an undeploy."""

    project: str
    name: str
    action: str
    deployed: DeployedApi | None


class Deployer:
    def __init__(
        self,
        store: ConfigStore,
        catalog: Catalog,
        registry: WorkerRegistry,
        client: WorkerClient,
        push_timeout: float,
        consumers: ConsumerSource | None = None,
        signing_keys: KeySource | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.consumers = consumers
        self.signing_keys = signing_keys
        self.revisions = EnvironmentRevisions(store)
        self.api_revisions_store = ApiRevisions(store, catalog)
        self.records = DeploymentHistory(store, catalog)
        self.publisher = Publisher(registry, client, push_timeout)
        self.compile_check = RevisionCheck()
        self.variables = EnvironmentVariables(store)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.on_push: list[Callable[[str, list[dict[str, Any]]], None]] = []
        """Called with the environment and per-worker results after each push (metrics)."""

    # revisions ----------------------------------------------------------------------------
    async def revision(self, environment: str, number: int) -> EnvironmentRevision:
        return await self.revisions.get(environment, number)

    async def runnable(self, environment: str, number: int) -> EnvironmentRevision:
        """The revision as its workers run it: variables expanded (secret values included, so
        only the signed cluster API hands it out)."""
        return await self.revisions.runnable(environment, number)

    async def current(self, environment: str) -> EnvironmentRevision | None:
        env = await self.catalog.environment(environment)
        desired = env.data.get("desired_revision")
        return None if desired is None else await self.revisions.get(environment, desired)

    async def api_revisions(self, project: str, name: str) -> list[dict[str, Any]]:
        return await self.api_revisions_store.listing(project, name)

    async def api_revision_document(self, project: str, name: str, number: int) -> dict[str, Any]:
        deployed = await self.api_revisions_store.get(project, name, number)
        return deployed.api.model_dump(mode="json")

    # actions ------------------------------------------------------------------------------
    async def _change(
        self,
        environment: str,
        project: str,
        name: str,
        action: str,
        api_revision: int | None,
        actor: str,
        current: EnvironmentRevision | None,
    ) -> Change:
        if action == "undeploy":
            if current is None or not any(
                d.api.project == project and d.api.name == name for d in current.apis
            ):
                raise NotFound("deployments", f"{environment}/{api_key(project, name)}")
            return Change(project, name, action, None)
        if action == "rollback":
            if api_revision is None:
                raise ConfigError("rollback needs an api_revision", "body.api_revision")
            return Change(
                project,
                name,
                action,
                await self.api_revisions_store.get(project, name, api_revision),
            )
        if api_revision is not None:
            raise ConfigError("deploy takes the working copy; use rollback", "body.api_revision")
        return Change(
            project, name, action, await self.api_revisions_store.snapshot(project, name, actor)
        )

    async def deploy(
        self,
        environment: str,
        project: str,
        name: str,
        *,
        actor: str,
        note: str = "",
        api_revision: int | None = None,
    ) -> dict[str, Any]:
        action = "deploy" if api_revision is None else "rollback"
        return await self.batch(environment, [(project, name, action, api_revision)], actor, note)

    async def undeploy(
        self, environment: str, project: str, name: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        return await self.batch(environment, [(project, name, "undeploy", None)], actor, note)

    async def batch(
        self,
        environment: str,
        items: Sequence[tuple[str, str, str, int | None]],
        actor: str,
        note: str = "",
    ) -> dict[str, Any]:
        """Deploy, roll back and undeploy several APIs as one environment revision."""
        async with self._locks[environment]:
            await self.catalog.environment(environment)
            current = await self.current(environment)
            changes = [
                await self._change(environment, project, name, action, number, actor, current)
                for project, name, action, number in items
            ]
            return await self._publish(environment, actor, note, changes)

    async def republish(
        self, actor: str, note: str, only: str | None = None
    ) -> list[dict[str, Any]]:
        """A new revision of every deployed environment (or of ``only``) with the same APIs,
        fresh consumers and signing keys."""
        published = []
        for env in await self.catalog.environments():
            if env.data.get("desired_revision") is None or only not in (None, env.id):
                continue
            async with self._locks[env.id]:
                result = await self._publish(env.id, actor, note, [])
            published.append(
                {
                    "environment": env.id,
                    "env_revision": result["env_revision"],
                    "results": result["results"],
                }
            )
        return published

    async def _globals(
        self,
        apis: Sequence[DeployedApi],
        previous: Mapping[str, PolicySpec],
        refresh: bool,
    ) -> dict[str, PolicySpec]:
        names: set[str] = set()
        for deployed in apis:
            names |= global_refs(deployed.api)
        current = await self.catalog.global_specs() if refresh and names else {}
        chosen: dict[str, PolicySpec] = {}
        for name in sorted(names):
            spec = current.get(name) or previous.get(name)
            if spec is None:
                raise DeploymentError(f"global policy {name!r} does not exist")
            chosen[name] = spec
        return chosen

    async def _variables(
        self, environment: str, apis: Sequence[DeployedApi]
    ) -> dict[str, RevisionVariable]:
        """The environment's variables the APIs read (those alone go into the revision)."""
        defined = await self.variables.values(environment)
        used = set().union(*(referenced_variables(d.api) for d in apis))
        return {name: defined[name] for name in sorted(used) if name in defined}

    def _expanded(
        self,
        environment: str,
        apis: Sequence[DeployedApi],
        variables: Mapping[str, RevisionVariable],
        global_policies: Mapping[str, PolicySpec],
    ) -> list[DeployedApi]:
        """The APIs as workers will run them, checked: variables expanded, backend addresses
        against the operator's policy, policies and routes of the whole environment."""
        runnable = expand_apis(environment, apis, variables)
        for deployed in runnable:
            try:
                self.catalog.check_backends(deployed.api)
            except ConfigError as exc:
                api = deployed.api
                field = (exc.field or "").removeprefix("body.")
                raise ConfigError(
                    f"API {api.project}/{api.name} in environment {environment}: {exc.message}",
                    f"apis[{api.project}/{api.name}].{field}",
                ) from None
        validate_environment_apis([d.api for d in runnable], global_policies)
        return runnable

    async def _publish(
        self, environment: str, actor: str, note: str, changes: Sequence[Change]
    ) -> dict[str, Any]:
        env = await self.catalog.environment(environment)
        current = await self.current(environment)
        by_key = {(d.api.project, d.api.name): d for d in (current.apis if current else [])}
        for change in changes:
            if change.deployed is None:
                by_key.pop((change.project, change.name), None)
            else:
                by_key[(change.project, change.name)] = change.deployed
        apis = [by_key[k] for k in sorted(by_key)]
        global_policies = await self._globals(
            apis,
            current.global_policies if current else {},
            refresh=any(c.deployed is not None for c in changes),
        )
        variables = await self._variables(environment, apis)
        with scrubbed(variables):
            runnable = self._expanded(environment, apis, variables, global_policies)
        consumers = (
            await self.consumers(environment)
            if self.consumers is not None
            else (current.consumers if current else [])
        )

        number = await self.store.next_sequence(f"env_revision:{environment}")
        snapshot = EnvironmentRevision(
            environment=environment,
            revision=number,
            created_at=datetime.now(UTC),
            apis=apis,
            global_policies=global_policies,
            consumers=consumers,
            nonce_secret=secrets.token_urlsafe(32),
            signing_keys=(
                await self.signing_keys(environment)
                if self.signing_keys is not None
                else (current.signing_keys if current else [])
            ),
            variables=variables,
        )
        with scrubbed(variables):
            self.compile_check(
                snapshot.model_copy(update={"apis": runnable, "variables": {}}), variables
            )
        await self.revisions.put(snapshot)
        items: list[dict[str, Any]] = [
            {
                "project": c.project,
                "api": c.name,
                "action": c.action,
                "api_revision": c.deployed.api_revision if c.deployed else None,
            }
            for c in changes
        ]
        if not changes:
            action = "consumers"
        elif len(changes) == 1:
            action = changes[0].action
        else:
            action = "batch"
        first = items[0] if len(items) == 1 else None
        deployment: dict[str, Any] = {
            "environment": environment,
            "action": action,
            "project": first["project"] if first else None,
            "api": first["api"] if first else None,
            "api_id": api_key(first["project"], first["api"]) if first else None,
            "api_revision": first["api_revision"] if first else None,
            "items": items,
            "env_revision": number,
            "previous_revision": env.data.get("desired_revision"),
            "note": note,
            "actor": actor,
            "at": datetime.now(UTC).isoformat(),
            "status": PENDING,
            "results": [],
        }
        # recorded (history and audit) before the environment's pointer moves: a manager that
        # stops between the steps leaves a pending record that ``reconcile`` settles on start
        record_id = deployment_id()
        record = await self.records.record(record_id, deployment)
        await audit.record(
            self.store,
            actor,
            f"deployment.{action}",
            f"environments/{environment}",
            {"desired_revision": env.data.get("desired_revision")},
            {"desired_revision": number, "items": items, "note": note},
        )
        try:
            await self.store.replace(
                "environments",
                environment,
                {**env.data, "desired_revision": number},
                expected_version=env.version,
            )
        except Conflict:
            await self.records.settle(
                record,
                {**deployment, "status": FAILED, "error": "the environment changed meanwhile"},
            )
            raise
        results = await self.publisher.push(environment, number)
        for hook in self.on_push:
            hook(environment, results)
        deployment |= {"status": PUBLISHED, "results": results}
        await self.records.settle(record, deployment)
        return {"id": record_id, **deployment}

    # status -------------------------------------------------------------------------------
    async def deployed_in(self, project: str, name: str) -> list[str]:
        """Environments whose current revision serves this API."""
        found = []
        for env in await self.catalog.environments():
            current = await self.current(env.id)
            if current and any(
                d.api.project == project and d.api.name == name for d in current.apis
            ):
                found.append(env.id)
        return found

    async def api_status(
        self, docs: Sequence[Document], global_now: Mapping[str, PolicySpec]
    ) -> dict[str, list[dict[str, Any]]]:
        """Per API (``project/name``): where it is deployed and whether it needs a redeploy there.

        Redeploy is required when the working copy differs from the deployed API revision, or
        when a global policy the deployed API refers to, or an environment variable it reads,
        changed since the revision was built."""
        wanted = {d.id: d for d in docs}
        status: dict[str, list[dict[str, Any]]] = {key: [] for key in wanted}
        for env in await self.catalog.environments():
            current = await self.current(env.id)
            if current is None:
                continue
            values = await self.variables.values(env.id) if current.variables else {}
            for deployed in current.apis:
                key = api_key(deployed.api.project, deployed.api.name)
                doc = wanted.get(key)
                if doc is None:
                    continue
                reasons = []
                changed_globals = []
                copy_changed = deployed.api.model_dump(mode="json") != doc.data
                if copy_changed:
                    reasons.append(
                        f"the working copy changed since API revision {deployed.api_revision}"
                    )
                for name in sorted(global_refs(deployed.api)):
                    served = current.global_policies.get(name)
                    now = global_now.get(name)
                    if (
                        served is not None
                        and now is not None
                        and served.model_dump(mode="json") != now.model_dump(mode="json")
                    ):
                        reasons.append(f"global policy {name!r} changed")
                        changed_globals.append(name)
                for name in sorted(referenced_variables(deployed.api)):
                    if current.variables.get(name) != values.get(name):
                        reasons.append(f"variable {name} changed")
                status[key].append(
                    {
                        "environment": env.id,
                        "env_revision": current.revision,
                        "api_revision": deployed.api_revision,
                        "redeploy_required": bool(reasons),
                        "reasons": reasons,
                        "working_copy_changed": copy_changed,
                        "changed_global_policies": changed_globals,
                    }
                )
        return status
