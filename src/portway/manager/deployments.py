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
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portway.cluster.messages import DeployAck, DeployNotice
from portway.config.backend_tls import backend_tls_context, tls_settings
from portway.config.models import ApiProxy, PolicySpec
from portway.config.revision import ConsumerSnapshot, DeployedApi, EnvironmentRevision
from portway.errors import ConfigError, Conflict, DeploymentError, NotFound
from portway.manager import audit
from portway.manager.catalog import Catalog, api_key
from portway.manager.registry import WorkerRegistry
from portway.manager.sealing import SealedStore
from portway.manager.validation import global_refs, validate_environment_apis
from portway.manager.worker_client import WorkerClient
from portway.policies.factory import route_pipelines
from portway.policies.services import PolicyServices
from portway.stores.cache_local import LocalCache
from portway.stores.config_store import ConfigStore, Document
from portway.worker.runtime import compile_router

log = logging.getLogger("portway.manager.deployments")

ConsumerSource = Callable[[str], Awaitable[list[ConsumerSnapshot]]]
_CACHE_SIZE = 16
_PART_CHARS = 512 * 1024  # base64 characters per stored part
_COMPILED_KEYS = 100_000

# a deployment record's status
PENDING = "pending"  # recorded; the environment's desired revision not moved yet
PUBLISHED = "published"  # desired revision moved and workers pushed
FAILED = "failed"  # never became the desired revision
INTERRUPTED = "interrupted"  # became desired, but the manager stopped before recording the push
RECOVERED = "recovered"  # desired revision found without any record (settled on start)


@dataclass(frozen=True, slots=True)
class Change:
    """One API's part of a deployment: ``deployed`` is None for an undeploy."""

    project: str
    name: str
    action: str
    deployed: DeployedApi | None


def _deployment_id() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}"


class Deployer:
    def __init__(
        self,
        store: ConfigStore,
        catalog: Catalog,
        registry: WorkerRegistry,
        client: WorkerClient,
        push_timeout: float,
        consumers: ConsumerSource | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.registry = registry
        self.client = client
        self.push_timeout = push_timeout
        self.consumers = consumers
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._cache: OrderedDict[tuple[str, int], EnvironmentRevision] = OrderedDict()
        self._compiled: set[str] = set()
        self.on_push: list[Callable[[str, list[dict[str, Any]]], None]] = []
        """Called with the environment and per-worker results after each push (metrics)."""

    # revisions ----------------------------------------------------------------------------
    async def revision(self, environment: str, number: int) -> EnvironmentRevision:
        """One environment revision; immutable, so parsed ones are kept in a small cache."""
        cached = self._cache.get((environment, number))
        if cached is not None:
            self._cache.move_to_end((environment, number))
            return cached
        doc = await self.store.get("env_revisions", f"{environment}@{number}")
        if doc is None:
            raise NotFound("env_revisions", f"{environment}@{number}")
        if "snapshot" in doc.data:  # written before revisions were stored in parts
            revision = EnvironmentRevision.model_validate(doc.data["snapshot"])
        else:
            parts = []
            for index in range(int(doc.data["parts"])):
                part = await self.store.get("env_revision_parts", f"{doc.id}#{index}")
                if part is None:
                    raise NotFound("env_revision_parts", f"{doc.id}#{index}")
                parts.append(str(part.data["data"]))
            raw = zlib.decompress(base64.b64decode("".join(parts)))
            if isinstance(self.store, SealedStore):
                opened = self.store.opened("revision", json.loads(raw))
                revision = EnvironmentRevision.model_validate(opened)
            else:
                revision = EnvironmentRevision.model_validate_json(raw)
        self._remember(revision)
        return revision

    async def _store_revision(self, snapshot: EnvironmentRevision) -> None:
        """An environment revision as compressed parts (each document stays far below the
        store's size limit, whatever the number of APIs), then its header. The header is written
        last, so a revision is either complete or invisible."""
        key = f"{snapshot.environment}@{snapshot.revision}"
        raw = snapshot.model_dump_json().encode()
        if isinstance(self.store, SealedStore):
            sealed = self.store.sealed("revision", snapshot.model_dump(mode="json"))
            raw = json.dumps(sealed).encode()
        packed = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
        chunks = [packed[i : i + _PART_CHARS] for i in range(0, len(packed), _PART_CHARS)] or [""]
        for index, chunk in enumerate(chunks):
            await self.store.insert(
                "env_revision_parts",
                f"{key}#{index}",
                {"environment": snapshot.environment, "data": chunk},
            )
        await self.store.insert(
            "env_revisions",
            key,
            {
                "environment": snapshot.environment,
                "revision": snapshot.revision,
                "created_at": snapshot.created_at.isoformat(),
                "encoding": "zlib+base64",
                "parts": len(chunks),
                "bytes": len(raw),
                "apis": len(snapshot.apis),
                "consumers": len(snapshot.consumers),
            },
        )

    def _remember(self, revision: EnvironmentRevision) -> None:
        self._cache[(revision.environment, revision.revision)] = revision
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    async def current(self, environment: str) -> EnvironmentRevision | None:
        env = await self.catalog.environment(environment)
        desired = env.data.get("desired_revision")
        return None if desired is None else await self.revision(environment, desired)

    async def _snapshot_api(self, project: str, name: str, actor: str) -> DeployedApi:
        """The API's working copy as a numbered API revision (reused when unchanged)."""
        doc = await self.catalog.api(project, name)
        key = api_key(project, name)
        latest = await self._latest_api_revision(key)
        if latest is not None and latest.data["api"] == doc.data:
            return DeployedApi(
                api=ApiProxy.model_validate(doc.data), api_revision=latest.data["revision"]
            )
        number = await self.store.next_sequence(f"api_revision:{key}")
        await self.store.insert(
            "api_revisions",
            f"{key}@{number}",
            {
                "api_id": key,
                "revision": number,
                "api": doc.data,
                "created_at": datetime.now(UTC).isoformat(),
                "actor": actor,
            },
        )
        pointer = await self.store.get("meta", f"latest_api_revision:{key}")
        if pointer is None:
            await self.store.insert("meta", f"latest_api_revision:{key}", {"revision": number})
        else:
            await self.store.replace(
                "meta",
                pointer.id,
                {"revision": max(number, pointer.data["revision"])},
                expected_version=pointer.version,
            )
        return DeployedApi(api=ApiProxy.model_validate(doc.data), api_revision=number)

    async def _latest_api_revision(self, key: str) -> Document | None:
        """The newest API revision, through a pointer document (no scan of all revisions)."""
        pointer = await self.store.get("meta", f"latest_api_revision:{key}")
        if pointer is None:
            return None
        return await self.store.get("api_revisions", f"{key}@{pointer.data['revision']}")

    async def _api_revision(self, project: str, name: str, number: int) -> DeployedApi:
        doc = await self.store.get("api_revisions", f"{api_key(project, name)}@{number}")
        if doc is None:
            raise NotFound("api_revisions", f"{api_key(project, name)}@{number}")
        return DeployedApi(api=ApiProxy.model_validate(doc.data["api"]), api_revision=number)

    async def api_revisions(self, project: str, name: str) -> list[dict[str, Any]]:
        docs = await self.store.find("api_revisions", {"api_id": api_key(project, name)})
        return sorted(
            (
                {
                    "revision": d.data["revision"],
                    "created_at": d.data["created_at"],
                    "actor": d.data["actor"],
                }
                for d in docs
            ),
            key=lambda r: r["revision"],
        )

    async def api_revision_document(self, project: str, name: str, number: int) -> dict[str, Any]:
        deployed = await self._api_revision(project, name, number)
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
                project, name, action, await self._api_revision(project, name, api_revision)
            )
        if api_revision is not None:
            raise ConfigError("deploy takes the working copy; use rollback", "body.api_revision")
        return Change(project, name, action, await self._snapshot_api(project, name, actor))

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

    async def republish(self, actor: str, note: str) -> list[dict[str, Any]]:
        """A new revision of every deployed environment with the same APIs and fresh consumers."""
        published = []
        for env in await self.catalog.environments():
            if env.data.get("desired_revision") is None:
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
        validate_environment_apis([d.api for d in apis], global_policies)
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
        )
        self._compile_check(snapshot)
        await self._store_revision(snapshot)
        self._remember(snapshot)
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
        deployment_id = _deployment_id()
        record = await self.store.insert("deployments", deployment_id, deployment)
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
            await self.store.replace(
                "deployments",
                deployment_id,
                {**deployment, "status": FAILED, "error": "the environment changed meanwhile"},
                expected_version=record.version,
            )
            raise
        results = await self.push(environment, number)
        deployment |= {"status": PUBLISHED, "results": results}
        await self.store.replace(
            "deployments", deployment_id, deployment, expected_version=record.version
        )
        return {"id": deployment_id, **deployment}

    async def reconcile(self, actor: str = "system") -> list[dict[str, Any]]:
        """Settle what a manager stopped mid-deploy left behind (run at start, before serving):

        - a pending record whose revision the environment points to went live: ``interrupted``
          (its push may not have happened; workers pull the desired revision);
        - a pending record whose revision the environment does not point to never went live:
          ``failed``;
        - a desired revision without any record (written before records came first):
          a record ``recovered`` is added.
        Each settlement is audited as ``deployment.reconcile``."""
        settled: list[dict[str, Any]] = []
        for env in await self.catalog.environments():
            desired = env.data.get("desired_revision")
            records = await self.store.find("deployments", {"environment": env.id})
            for doc in records:
                if doc.data.get("status") != PENDING:
                    continue
                went_live = doc.data.get("env_revision") == desired
                status = INTERRUPTED if went_live else FAILED
                note = (
                    "the manager stopped after the revision became desired; workers pull it"
                    if went_live
                    else "the manager stopped before the revision became desired"
                )
                await self.store.replace(
                    "deployments",
                    doc.id,
                    {**doc.data, "status": status, "error": note},
                    expected_version=doc.version,
                )
                settled.append({"id": doc.id, "environment": env.id, "status": status})
                await audit.record(
                    self.store,
                    actor,
                    "deployment.reconcile",
                    f"environments/{env.id}",
                    {"deployment": doc.id, "status": PENDING},
                    {
                        "deployment": doc.id,
                        "status": status,
                        "env_revision": doc.data.get("env_revision"),
                    },
                )
            if desired is None or any(d.data.get("env_revision") == desired for d in records):
                continue
            deployment_id = _deployment_id()
            await self.store.insert(
                "deployments",
                deployment_id,
                {
                    "environment": env.id,
                    "action": "recovered",
                    "project": None,
                    "api": None,
                    "api_id": None,
                    "api_revision": None,
                    "items": [],
                    "env_revision": desired,
                    "previous_revision": None,
                    "note": "desired revision found without a deployment record",
                    "actor": actor,
                    "at": datetime.now(UTC).isoformat(),
                    "status": RECOVERED,
                    "results": [],
                },
            )
            settled.append({"id": deployment_id, "environment": env.id, "status": RECOVERED})
            await audit.record(
                self.store,
                actor,
                "deployment.reconcile",
                f"environments/{env.id}",
                None,
                {"deployment": deployment_id, "status": RECOVERED, "env_revision": desired},
            )
        for item in settled:
            log.warning(
                "deployment %s of %s settled as %s", item["id"], item["environment"], item["status"]
            )
        return settled

    def _compile_check(self, snapshot: EnvironmentRevision) -> None:
        """Compile the revision exactly as a worker will (routing table, the TLS context of every
        HTTPS backend, every route's policy pipeline), so a revision that would not compile never
        reaches a worker.

        An API revision is immutable, so one that compiled with the same global policies is not
        compiled again (consumer republications and one-API redeploys stay cheap)."""
        services = PolicyServices(
            environment=snapshot.environment, cache=LocalCache(), local_cache=LocalCache()
        )
        pipelines = route_pipelines(services)
        contexts: dict[tuple[bool, str | None], str] = {}
        try:
            compile_router(snapshot)
            for deployed in snapshot.apis:
                api = deployed.api
                # the worker builds each HTTPS backend's TLS context when it compiles; the CA
                # bundle is a file, so this is checked on every compile, never remembered
                for settings in tls_settings(api):
                    if settings not in contexts:
                        try:
                            backend_tls_context(*settings)
                        except ConfigError as exc:
                            raise ConfigError(
                                exc.message, f"{api_key(api.project, api.name)}: {exc.field}"
                            ) from None
                        contexts[settings] = api_key(api.project, api.name)
                refs = {
                    name: snapshot.global_policies[name].model_dump(mode="json")
                    for name in sorted(global_refs(api))
                    if name in snapshot.global_policies
                }
                key = hashlib.sha256(
                    json.dumps(
                        [api.project, api.name, deployed.api_revision, refs], sort_keys=True
                    ).encode()
                ).hexdigest()
                if key in self._compiled:
                    continue
                pipelines(api, None, snapshot)
                for endpoint in api.endpoints:
                    pipelines(api, endpoint, snapshot)
                if len(self._compiled) >= _COMPILED_KEYS:
                    self._compiled.clear()
                self._compiled.add(key)
        except (ValueError, ConfigError, DeploymentError) as exc:
            raise DeploymentError(f"revision {snapshot.revision} does not compile: {exc}") from exc

    async def push(self, environment: str, number: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        workers = await self.registry.workers(environment)
        notice = DeployNotice(environment=environment, revision=number)

        async def one(doc_id: str, address: str, state: str) -> dict[str, Any]:
            await self.registry.mark_desired(doc_id, number, now)
            result: dict[str, Any] = {"worker": doc_id, "address": address}
            if state == "down":
                return result | {
                    "success": False,
                    "error": "worker is down; it will pull on return",
                    "at": datetime.now(UTC).isoformat(),
                    "seconds": 0.0,
                }
            started = time.monotonic()
            try:
                ack: DeployAck = await asyncio.wait_for(
                    self.client.push(address, notice), self.push_timeout
                )
            except Exception as exc:
                log.warning("push of %s@%d to %s failed: %s", environment, number, doc_id, exc)
                return result | {
                    "success": False,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "at": datetime.now(UTC).isoformat(),
                    "seconds": round(time.monotonic() - started, 3),
                }
            return result | {
                "success": ack.success and ack.served_revision == number,
                "served_revision": ack.served_revision,
                "error": ack.error,
                "at": datetime.now(UTC).isoformat(),
                "seconds": round(time.monotonic() - started, 3),
            }

        jobs = []
        for doc in workers:
            view = self.registry.view(doc, number, now)
            jobs.append(one(doc.id, str(doc.data.get("address")), view["state"]))
        results = list(await asyncio.gather(*jobs))
        for hook in self.on_push:
            hook(environment, results)
        return results

    async def history(
        self,
        environment: str,
        *,
        project: str | None = None,
        api: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        docs = await self.store.find("deployments", {"environment": environment})
        rows = []
        for d in sorted(docs, key=lambda d: d.id, reverse=True):
            items = d.data.get("items") or [
                {"project": d.data.get("project"), "api": d.data.get("api")}
            ]
            if api is not None and not any(
                i.get("api") == api and (project is None or i.get("project") == project)
                for i in items
            ):
                continue
            rows.append({"id": d.id, **d.data})
            if limit is not None and len(rows) >= limit:
                break
        return rows

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
        when a global policy the deployed API refers to changed since the revision was built."""
        wanted = {d.id: d for d in docs}
        status: dict[str, list[dict[str, Any]]] = {key: [] for key in wanted}
        for env in await self.catalog.environments():
            current = await self.current(env.id)
            if current is None:
                continue
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
