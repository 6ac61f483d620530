"""Environments, projects, API proxies and global policies: validated, versioned, audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from portway.config.declarative import GlobalPolicy
from portway.config.models import (
    ApiProxy,
    Environment,
    PolicySpec,
    Project,
    policy_entries,
)
from portway.errors import ConfigError, Conflict, DocumentTooLarge, NotFound
from portway.manager import audit
from portway.manager.addresses import BackendPolicy
from portway.manager.paging import Select, read_page
from portway.manager.validation import specs, validate_api, validate_policy
from portway.policies.secrets import keep_secrets
from portway.stores.config_store import ConfigStore, Document, Order, Prefix


def api_key(project: str, name: str) -> str:
    return f"{project}/{name}"


def scoped_specs(
    data: dict[str, Any], root: str = "body"
) -> list[tuple[Any, str, dict[str, Any], str]]:
    """Each policy entry of an API document with its scope key, name and field path."""
    found = []
    scopes: list[tuple[Any, dict[str, Any], str]] = [(None, data, root)]
    for index, endpoint in enumerate(data.get("endpoints") or []):
        route = (endpoint.get("path"), tuple(sorted(endpoint.get("methods") or [])))
        scopes.append((route, endpoint, f"{root}.endpoints[{index}]"))
    for scope, owner, where in scopes:
        for phase, entries in (owner.get("policies") or {}).items():
            for index, spec in enumerate(entries):
                found.append((scope, spec["name"], spec, f"{where}.policies.{phase}[{index}]"))
    return found


def keep_api_secrets(api: ApiProxy, old: dict[str, Any] | None) -> ApiProxy:
    """``api`` with every ``"***"`` secret replaced by the stored value of the same policy."""
    stored = {(scope, name): spec for scope, name, spec, _ in scoped_specs(old or {})}
    data = api.model_dump(mode="json")
    for scope, name, spec, where in scoped_specs(data):
        spec.update(keep_secrets(spec, stored.get((scope, name)), where))
    return ApiProxy.model_validate(data)


@contextmanager
def _one_document(api: ApiProxy) -> Iterator[None]:
    """An API proxy is stored as one document: one above the store's size says so in the
    caller's terms (its endpoints, what to do) instead of the store's ``data`` field."""
    try:
        yield
    except DocumentTooLarge as exc:
        examples = sum(
            1 for e in api.endpoints for p in e.policies.request if p.type == "mock_response"
        )
        raise ConfigError(
            f"the API proxy {api.project}/{api.name} is {exc.size:,} bytes stored as JSON "
            f"({len(api.endpoints)} endpoints, {examples} with an example response); one API "
            f"proxy may hold at most {exc.limit:,}. Split it into several API proxies "
            "(e.g. by path prefix or tag), or import it without example responses "
            '(`"examples": false`, `portway api create --openapi … --no-examples`)',
            "body",
        ) from None


class Catalog:
    def __init__(self, store: ConfigStore, backends: BackendPolicy | None = None) -> None:
        self.store = store
        self.backends = backends or BackendPolicy()

    def check_backends(self, api: ApiProxy) -> None:
        """The operator's backend address policy, for the backends and the services the API's
        ``api_call`` policies call; ``ConfigError`` names the URL."""
        for index, backend in enumerate(api.backends):
            why = self.backends.refusal(backend.url)
            if why is not None:
                raise ConfigError(why, f"body.backends[{index}].url")
        scopes = [("body.policies", api.policies)] + [
            (f"body.endpoints[{i}].policies", e.policies) for i, e in enumerate(api.endpoints)
        ]
        for where, lists in scopes:
            for phase in ("request", "response", "error"):
                for index, spec in enumerate(getattr(lists, phase)):
                    self.check_called_url(spec, f"{where}.{phase}[{index}]")

    def check_called_url(self, spec: PolicySpec, where: str) -> None:
        url = spec.config.get("url") if spec.type == "api_call" else None
        if isinstance(url, str):
            why = self.backends.refusal(url)
            if why is not None:
                raise ConfigError(why, f"{where}.config.url")

    # environments -------------------------------------------------------------------------
    async def create_environment(self, env: Environment, actor: str) -> Document:
        data = env.model_dump(mode="json") | {"desired_revision": None}
        doc = await self.store.insert("environments", env.name, data)
        await audit.record(
            self.store, actor, "environment.create", f"environments/{env.name}", None, data
        )
        return doc

    async def environment(self, name: str) -> Document:
        doc = await self.store.get("environments", name)
        if doc is None:
            raise NotFound("environments", name)
        return doc

    async def environments(self) -> list[Document]:
        return await self.store.find("environments")

    async def desired_revisions(self) -> dict[str, int | None]:
        """Environment -> the revision its workers should serve."""
        return {d.id: d.data.get("desired_revision") for d in await self.environments()}

    async def update_environment(
        self, name: str, env: Environment, expected_version: int | None, actor: str
    ) -> Document:
        old = await self.environment(name)
        if env.name != name:
            raise ConfigError("cannot be changed; create a new environment instead", "body.name")
        data = {**env.model_dump(mode="json"), "desired_revision": old.data.get("desired_revision")}
        doc = await self.store.replace(
            "environments", name, data, expected_version=expected_version or old.version
        )
        await audit.record(
            self.store, actor, "environment.update", f"environments/{name}", old.data, data
        )
        return doc

    async def delete_environment(
        self, name: str, expected_version: int | None, actor: str, deployed: list[str]
    ) -> None:
        old = await self.environment(name)
        if deployed:
            raise Conflict(
                f"environment {name} still serves {len(deployed)} API(s) "
                f"({', '.join(deployed[:5])}); undeploy them first"
            )
        await self.store.delete("environments", name, expected_version=expected_version)
        await audit.record(
            self.store, actor, "environment.delete", f"environments/{name}", old.data, None
        )

    # projects -----------------------------------------------------------------------------
    async def create_project(self, project: Project, actor: str) -> Document:
        data = project.model_dump(mode="json")
        doc = await self.store.insert("projects", project.name, data)
        await audit.record(
            self.store, actor, "project.create", f"projects/{project.name}", None, data
        )
        return doc

    async def project(self, name: str) -> Document:
        doc = await self.store.get("projects", name)
        if doc is None:
            raise NotFound("projects", name)
        return doc

    async def ensure_project(self, name: str) -> None:
        await self.project(name)

    async def projects(self) -> list[Document]:
        return await self.store.find("projects")

    async def update_project(
        self, name: str, project: Project, expected_version: int | None, actor: str
    ) -> Document:
        old = await self.project(name)
        if project.name != name:
            raise ConfigError("cannot be changed; create a new project instead", "body.name")
        data = project.model_dump(mode="json")
        doc = await self.store.replace(
            "projects", name, data, expected_version=expected_version or old.version
        )
        await audit.record(self.store, actor, "project.update", f"projects/{name}", old.data, data)
        return doc

    async def delete_project(self, name: str, expected_version: int | None, actor: str) -> None:
        old = await self.project(name)
        apis = await self.apis(name)
        if apis:
            raise Conflict(f"project {name} still holds {len(apis)} API proxies; delete them first")
        await self.store.delete("projects", name, expected_version=expected_version)
        await audit.record(self.store, actor, "project.delete", f"projects/{name}", old.data, None)

    # API proxies --------------------------------------------------------------------------
    async def create_api(self, api: ApiProxy, actor: str) -> Document:
        await self.ensure_project(api.project)
        self.check_backends(api)
        api = keep_api_secrets(api, None)
        validate_api(api, await self.global_specs())
        data = api.model_dump(mode="json")
        key = api_key(api.project, api.name)
        with _one_document(api):
            doc = await self.store.insert("apis", key, data)
        await audit.record(self.store, actor, "api.create", f"apis/{key}", None, data)
        return doc

    async def api(self, project: str, name: str) -> Document:
        doc = await self.store.get("apis", api_key(project, name))
        if doc is None:
            raise NotFound("apis", api_key(project, name))
        return doc

    async def apis(self, project: str | None = None) -> list[Document]:
        return await self.store.find("apis", {"project": project} if project else None)

    async def api_page(
        self,
        *,
        project: str | None = None,
        base_path_prefix: str | None = None,
        name_contains: str | None = None,
        select: Select | None = None,
        order: Order = "asc",
        limit: int,
        cursor: str | None = None,
    ) -> tuple[list[Document], str | None]:
        """One page of API proxies by id (``project/name``). Project and base-path prefix are
        indexed; a name substring and ``select`` are applied to each store page."""
        where: dict[str, Any] = {}
        if project:
            where["project"] = project
        if base_path_prefix:
            where["base_path"] = Prefix(base_path_prefix)

        async def chosen(docs: Sequence[Document]) -> Sequence[Document]:
            if name_contains:
                docs = [d for d in docs if name_contains in str(d.data.get("name", ""))]
            return await select(docs) if select is not None else docs

        computed = name_contains or select is not None
        return await read_page(
            self.store,
            "apis",
            where,
            order=order,
            limit=limit,
            cursor=cursor,
            select=chosen if computed else None,
        )

    async def update_api(
        self, project: str, name: str, api: ApiProxy, expected_version: int, actor: str
    ) -> Document:
        old = await self.api(project, name)
        if api.project != project or api.name != name:
            raise ConfigError("cannot be changed; create a new API proxy instead", "body.name")
        self.check_backends(api)
        api = keep_api_secrets(api, old.data)
        validate_api(api, await self.global_specs())
        data: dict[str, Any] = api.model_dump(mode="json")
        if data == old.data:
            return old
        with _one_document(api):
            doc = await self.store.replace("apis", old.id, data, expected_version=expected_version)
        await audit.record(self.store, actor, "api.update", f"apis/{old.id}", old.data, data)
        return doc

    async def modify_api(
        self,
        project: str,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        expected_version: int | None,
        actor: str,
    ) -> Document:
        """Apply ``change`` to a copy of the stored API, validate the result whole, store it."""
        old = await self.api(project, name)
        if expected_version is not None and expected_version != old.version:
            raise Conflict(
                f"apis/{old.id}: version {expected_version} is stale (current: {old.version})"
            )
        api = ApiProxy.model_validate(change(_deep_copy(old.data)))
        return await self.update_api(project, name, api, old.version, actor)

    async def delete_api(
        self,
        project: str,
        name: str,
        expected_version: int | None,
        actor: str,
        deployed_in: list[str] | None = None,
    ) -> None:
        old = await self.api(project, name)
        if deployed_in:
            raise Conflict(f"{old.id} is deployed to {', '.join(deployed_in)}; undeploy it first")
        await self.store.delete("apis", old.id, expected_version=expected_version)
        await audit.record(self.store, actor, "api.delete", f"apis/{old.id}", old.data, None)

    # global policies ----------------------------------------------------------------------
    async def global_policies(self) -> list[Document]:
        return await self.store.find("global_policies")

    async def global_specs(self) -> dict[str, PolicySpec]:
        return specs([d.data for d in await self.global_policies()])

    async def global_policy(self, name: str) -> Document:
        doc = await self.store.get("global_policies", name)
        if doc is None:
            raise NotFound("global_policies", name)
        return doc

    async def users_of_global(self, name: str) -> list[dict[str, str]]:
        """API proxies (working copies) whose policies refer to global policy ``name``."""
        users = []
        for doc in await self.apis():
            api = ApiProxy.model_validate(doc.data)
            for scope, spec in policy_entries(api):
                if spec.global_ref == name:
                    users.append(
                        {
                            "project": api.project,
                            "api": api.name,
                            "scope": scope,
                            "entry": spec.name,
                        }
                    )
        return users

    def check_global_policy(self, policy: GlobalPolicy) -> None:
        if policy.global_ref is not None:
            raise ConfigError("a global policy cannot refer to another one", "body.global_ref")
        validate_policy(policy, "body")
        self.check_called_url(policy, "body")

    async def create_global_policy(self, policy: GlobalPolicy, actor: str) -> Document:
        policy = GlobalPolicy.model_validate(
            keep_secrets(policy.model_dump(mode="json"), None, "body")
        )
        self.check_global_policy(policy)
        data = policy.model_dump(mode="json")
        doc = await self.store.insert("global_policies", policy.name, data)
        await audit.record(
            self.store, actor, "global_policy.create", f"global_policies/{policy.name}", None, data
        )
        return doc

    async def update_global_policy(
        self, name: str, policy: GlobalPolicy, expected_version: int | None, actor: str
    ) -> Document:
        old = await self.global_policy(name)
        if policy.name != name:
            raise ConfigError("cannot be changed; create a new global policy instead", "body.name")
        policy = GlobalPolicy.model_validate(
            keep_secrets(policy.model_dump(mode="json"), old.data, "body")
        )
        self.check_global_policy(policy)
        if policy.type != old.data["type"]:
            users = await self.users_of_global(name)
            if users:
                raise ConfigError(
                    f"cannot change the type while {len(users)} policy entries refer to it",
                    "body.type",
                )
        data = policy.model_dump(mode="json")
        if data == old.data:
            return old
        doc = await self.store.replace(
            "global_policies", name, data, expected_version=expected_version or old.version
        )
        await audit.record(
            self.store, actor, "global_policy.update", f"global_policies/{name}", old.data, data
        )
        return doc

    async def delete_global_policy(
        self, name: str, expected_version: int | None, actor: str
    ) -> None:
        """Refused while a working copy refers to it; deployed revisions keep their snapshot."""
        old = await self.global_policy(name)
        users = await self.users_of_global(name)
        if users:
            shown = ", ".join(f"{u['project']}/{u['api']}" for u in users[:5])
            raise Conflict(f"global policy {name} is used by {shown}; remove those entries first")
        await self.store.delete("global_policies", name, expected_version=expected_version)
        await audit.record(
            self.store, actor, "global_policy.delete", f"global_policies/{name}", old.data, None
        )


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
