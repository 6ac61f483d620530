"""Declarative configuration: export the whole configuration, plan the difference to a file, apply.

``plan`` compares the file with the store section by section and checks, before anything is
written, that the result holds together (projects of APIs exist, global policies referred to exist,
grants name existing APIs and environments, nothing deployed is deleted). ``apply`` then writes in
dependency order (environments, projects, global policies, APIs, consumers; deletions in reverse)
through the same code as the API routes, so every write is validated and audited.

``apply`` is all-or-nothing: the plan checks everything the store would refuse (unique base paths
per project, names) so what a dry run accepts the real run writes entirely. The store has no
multi-document transaction, so a write that still fails half-way (a concurrent change: 409, the
store going away: 503) is compensated: the writes already made are undone newest first (see
``undo_journal``), an audit entry ``declarative.undo`` lists them, and the error is answered. A
manager killed in the middle of an apply cannot compensate; running ``apply`` again converges.

Consumers changed by an apply are published to workers once, at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from portway.config.declarative import ConsumerSpec, DeclarativeConfig, GlobalPolicy
from portway.config.models import (
    ApiProxy,
    Environment,
    PolicySpec,
    Project,
    global_refs,
)
from portway.errors import ConfigError
from portway.manager import audit
from portway.manager.audit import diff, mask
from portway.manager.catalog import Catalog, api_key, scoped_specs
from portway.manager.consumers import Consumers
from portway.manager.deployments import Deployer
from portway.manager.undo_journal import UndoJournal
from portway.manager.validation import validate_api
from portway.policies.secrets import reference_secrets, resolve_references
from portway.stores.config_store import Document

KINDS = ("environments", "projects", "global_policies", "apis", "consumers")


@dataclass(slots=True)
class Change:
    kind: str
    name: str
    action: str  # create | update | delete | unchanged
    changes: list[dict[str, Any]] = field(default_factory=list)
    version: int | None = None

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "diff": self.changes}


@dataclass(slots=True)
class Plan:
    changes: list[Change]
    errors: list[dict[str, str]]

    def kinds_changed(self) -> set[str]:
        return {c.kind for c in self.changes if c.action != "unchanged"}

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts


def _dump(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def _normalized(kind: str, doc: Document) -> dict[str, Any]:
    data = doc.data
    if kind == "environments":
        return _dump(
            Environment.model_validate({k: v for k, v in data.items() if k != "desired_revision"})
        )
    if kind == "projects":
        return _dump(Project.model_validate(data))
    if kind == "global_policies":
        return _dump(GlobalPolicy.model_validate(data))
    if kind == "apis":
        return _dump(ApiProxy.model_validate(data))
    return _dump(ConsumerSpec.model_validate({k: v for k, v in data.items() if k != "created_at"}))


def _referenced(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """An exported item with its policy secrets as ``${env:PORTWAY_SECRET_…}`` references."""
    if kind == "global_policies":
        return reference_secrets(data, "GLOBAL")
    if kind == "apis":
        for _, _, spec, where in scoped_specs(data, ""):
            owner = [data.get("project", "default"), data["name"]]
            endpoint = re.match(r"\.endpoints\[(\d+)\]", where)
            if endpoint is not None:
                owner.append(f"E{endpoint.group(1)}")
            spec.update(reference_secrets(spec, *owner))
    return data


def resolve_secret_references(config: DeclarativeConfig) -> DeclarativeConfig:
    """The file with each ``${env:PORTWAY_SECRET_…}`` secret replaced by its value."""
    data = config.model_dump(mode="json", exclude_unset=True)
    for index, policy in enumerate(data.get("global_policies") or []):
        policy.update(resolve_references(policy, f"body.global_policies[{index}]"))
    for index, api in enumerate(data.get("apis") or []):
        for _, _, spec, where in scoped_specs(api, f"body.apis[{index}]"):
            spec.update(resolve_references(spec, where))
    return DeclarativeConfig.model_validate(data)


def _key(kind: str, item: BaseModel) -> str:
    if isinstance(item, ApiProxy):
        return api_key(item.project, item.name)
    name: str = getattr(item, "name")  # noqa: B009 - every section item has a name
    return name


class Declarative:
    def __init__(self, catalog: Catalog, consumers: Consumers, deployer: Deployer) -> None:
        self.catalog = catalog
        self.consumers = consumers
        self.deployer = deployer

    async def _current(self) -> dict[str, dict[str, Document]]:
        return {
            "environments": {d.id: d for d in await self.catalog.environments()},
            "projects": {d.id: d for d in await self.catalog.projects()},
            "global_policies": {d.id: d for d in await self.catalog.global_policies()},
            "apis": {d.id: d for d in await self.catalog.apis()},
            "consumers": {str(d.data["name"]): d for d in await self.consumers.all()},
        }

    async def export(self) -> dict[str, Any]:
        """The whole configuration as a declarative file (defaults left out, for readability)."""
        current = await self._current()
        out: dict[str, Any] = {"portway": 1}
        for kind in KINDS:
            items = []
            for key in sorted(current[kind]):
                normalized = _normalized(kind, current[kind][key])
                model = _MODELS[kind].model_validate(normalized)
                items.append(
                    _referenced(kind, model.model_dump(mode="json", exclude_defaults=True))
                )
            out[kind] = items
        return out

    async def plan(self, config: DeclarativeConfig, prune: bool) -> Plan:
        current = await self._current()
        changes: list[Change] = []
        final: dict[str, set[str]] = {}
        for kind in KINDS:
            items: Sequence[BaseModel] | None = getattr(config, kind)
            existing = current[kind]
            if items is None:
                final[kind] = set(existing)
                continue
            wanted = {_key(kind, item): item for item in items}
            for key, item in wanted.items():
                doc = existing.get(key)
                new = _dump(item)
                if doc is None:
                    changes.append(Change(kind, key, "create", diff({}, mask(new))))
                    continue
                old = _normalized(kind, doc)
                delta = diff(mask(old), mask(new))
                action = "update" if old != new else "unchanged"
                changes.append(Change(kind, key, action, delta, doc.version))
            kept = set(existing) & set(wanted) if prune else set(existing)
            if prune:
                for key in sorted(set(existing) - set(wanted)):
                    old = _normalized(kind, existing[key])
                    changes.append(
                        Change(kind, key, "delete", diff(mask(old), {}), existing[key].version)
                    )
            final[kind] = kept | set(wanted)
        errors = await self._check(config, current, changes, final)
        return Plan(changes, errors)

    async def _check(
        self,
        config: DeclarativeConfig,
        current: dict[str, dict[str, Document]],
        changes: list[Change],
        final: dict[str, set[str]],
    ) -> list[dict[str, str]]:
        """Does the configuration after the plan hold together? Errors name the file's fields."""
        errors: list[dict[str, str]] = []

        # global policies as they will be, for validating APIs
        globals_after: dict[str, PolicySpec] = {
            name: PolicySpec.model_validate(current["global_policies"][name].data)
            for name in final["global_policies"]
            if name in current["global_policies"]
        }
        for policy in config.global_policies or []:
            globals_after[policy.name] = policy

        for index, policy in enumerate(config.global_policies or []):
            try:
                self.catalog.check_global_policy(policy)
            except ConfigError as exc:
                errors.append(_error(exc, f"body.global_policies[{index}]"))
        apis_after: dict[str, ApiProxy] = {
            key: ApiProxy.model_validate(current["apis"][key].data)
            for key in final["apis"]
            if key in current["apis"]
        }
        errors.extend(_base_path_clashes(config.apis or [], apis_after))
        try:
            _api_order(config.apis or [], current["apis"])
        except ConfigError as exc:
            errors.append(_error(exc, None))
        for index, api in enumerate(config.apis or []):
            apis_after[api_key(api.project, api.name)] = api
            if api.project not in final["projects"]:
                errors.append(
                    {"field": f"body.apis[{index}].project", "message": f"no project {api.project}"}
                )
            try:
                self.catalog.check_backends(api)
                validate_api(api, globals_after)
            except ConfigError as exc:
                errors.append(_error(exc, f"body.apis[{index}]"))
        for change in changes:
            if change.action != "delete":
                continue
            if change.kind == "apis":
                project, name = change.name.split("/", 1)
                deployed = await self.deployer.deployed_in(project, name)
                if deployed:
                    errors.append(
                        {
                            "field": "body.apis",
                            "message": f"{change.name} is deployed to {', '.join(deployed)}; "
                            "undeploy it before pruning it",
                        }
                    )
            elif change.kind == "projects":
                holders = sorted(k for k, a in apis_after.items() if a.project == change.name)
                if holders:
                    errors.append(
                        {
                            "field": "body.projects",
                            "message": f"project {change.name} still holds "
                            f"{', '.join(holders[:5])}",
                        }
                    )
            elif change.kind == "global_policies":
                users = sorted(k for k, a in apis_after.items() if change.name in global_refs(a))
                if users:
                    errors.append(
                        {
                            "field": "body.global_policies",
                            "message": f"global policy {change.name} is used by "
                            f"{', '.join(users[:5])}",
                        }
                    )
            elif change.kind == "environments":
                revision = await self.deployer.current(change.name)
                if revision is not None and revision.apis:
                    errors.append(
                        {
                            "field": "body.environments",
                            "message": f"environment {change.name} still serves "
                            f"{len(revision.apis)} API(s); undeploy them before pruning it",
                        }
                    )
        for index, consumer in enumerate(config.consumers or []):
            try:
                await self.consumers.check_grants(
                    consumer.grants,
                    f"body.consumers[{index}].grants",
                    apis=set(apis_after),
                    environments=final["environments"],
                )
            except ConfigError as exc:
                errors.append(_error(exc, None))
        return errors

    async def apply(
        self,
        config: DeclarativeConfig,
        *,
        prune: bool,
        actor: str,
        authorize: Callable[[set[str]], None],
    ) -> tuple[Plan, list[dict[str, Any]]]:
        """Plan, authorize the kinds it changes, write; returns the plan and what was published."""
        plan = await self.plan(config, prune)
        if plan.errors:
            return plan, []
        authorize(plan.kinds_changed())
        journal = UndoJournal(self.catalog.store)
        writer = Declarative(
            Catalog(journal, self.catalog.backends), Consumers(journal), self.deployer
        )
        try:
            await writer._write_all(config, plan, actor)
        except Exception as exc:  # whatever stopped the writes, undo them before answering
            undone, failed = await journal.undo()
            await audit.record(
                self.catalog.store,
                actor,
                "declarative.undo",
                "declarative",
                None,
                {"error": str(exc)[:300], "undone": undone, "not_undone": failed},
            )
            raise
        published: list[dict[str, Any]] = []
        if "consumers" in plan.kinds_changed():
            published = await self.deployer.republish(actor, "declarative apply: consumers")
        return plan, published

    async def _write_all(self, config: DeclarativeConfig, plan: Plan, actor: str) -> None:
        items: dict[tuple[str, str], BaseModel] = {}
        for kind in KINDS:
            for item in getattr(config, kind) or []:
                items[(kind, _key(kind, item))] = item
        deletions = [c for c in plan.changes if c.action == "delete"]
        # an API deleted first frees its base path for one the file creates or moves there
        for change in (c for c in deletions if c.kind == "apis"):
            await self._delete(change, actor)
        todo = {(c.kind, c.name): c for c in plan.changes if c.action in ("create", "update")}
        current_apis = {d.id: d for d in await self.catalog.apis()}
        for kind in KINDS:
            keys = (
                _api_order(config.apis or [], current_apis)
                if kind == "apis"
                else [k for (kd, k) in todo if kd == kind]
            )
            for key in keys:
                write = todo.get((kind, key))
                if write is not None:
                    await self._write(write, items[(kind, key)], actor)
        for kind in reversed(KINDS):
            for deletion in (c for c in deletions if c.kind == kind and kind != "apis"):
                await self._delete(deletion, actor)

    async def _write(self, change: Change, item: BaseModel, actor: str) -> None:
        create = change.action == "create"
        if isinstance(item, Environment):
            if create:
                await self.catalog.create_environment(item, actor)
            else:
                await self.catalog.update_environment(change.name, item, change.version, actor)
        elif isinstance(item, Project):
            if create:
                await self.catalog.create_project(item, actor)
            else:
                await self.catalog.update_project(change.name, item, change.version, actor)
        elif isinstance(item, GlobalPolicy):
            if create:
                await self.catalog.create_global_policy(item, actor)
            else:
                await self.catalog.update_global_policy(change.name, item, change.version, actor)
        elif isinstance(item, ApiProxy):
            if create:
                await self.catalog.create_api(item, actor)
            else:
                assert change.version is not None
                await self.catalog.update_api(item.project, item.name, item, change.version, actor)
        elif isinstance(item, ConsumerSpec):
            if create:
                await self.consumers.create(item, actor, check=False)
            else:
                await self.consumers.replace(change.name, item, change.version, actor, check=False)

    async def _delete(self, change: Change, actor: str) -> None:
        if change.kind == "environments":
            await self.catalog.delete_environment(change.name, change.version, actor, [])
        elif change.kind == "projects":
            await self.catalog.delete_project(change.name, change.version, actor)
        elif change.kind == "global_policies":
            await self.catalog.delete_global_policy(change.name, change.version, actor)
        elif change.kind == "apis":
            project, name = change.name.split("/", 1)
            await self.catalog.delete_api(project, name, change.version, actor)
        else:
            await self.consumers.delete(change.name, change.version, actor)


_MODELS: dict[str, type[BaseModel]] = {
    "environments": Environment,
    "projects": Project,
    "global_policies": GlobalPolicy,
    "apis": ApiProxy,
    "consumers": ConsumerSpec,
}


def _error(exc: ConfigError, prefix: str | None) -> dict[str, str]:
    found = exc.field or "body"
    if prefix is not None:
        found = prefix + found.removeprefix("body")
    return {"field": found, "message": exc.message}


def _base_path_clashes(
    apis: Sequence[ApiProxy], after: dict[str, ApiProxy]
) -> list[dict[str, str]]:
    """Two APIs of one project with one base path (the store refuses the second): between the
    file's APIs, or between one of them and a stored API the file does not replace."""
    in_file = {api_key(a.project, a.name) for a in apis}
    claimed: dict[tuple[str, str], str] = {
        (a.project, a.base_path): key for key, a in after.items() if key not in in_file
    }
    errors = []
    for index, api in enumerate(apis):
        holder = claimed.setdefault((api.project, api.base_path), api_key(api.project, api.name))
        if holder != api_key(api.project, api.name):
            errors.append(
                {
                    "field": f"body.apis[{index}].base_path",
                    "message": f"{api.base_path} is already the base path of {holder} "
                    f"in project {api.project}",
                }
            )
    return errors


def _api_order(apis: Sequence[ApiProxy], stored: dict[str, Document]) -> list[str]:
    """The file's APIs (keys) in an order the store accepts: one that takes over the base path
    another API of the file gives up is written after that one. A cycle (two APIs swapping base
    paths) has no such order; ``ConfigError`` names the field."""
    holders = {(str(d.data["project"]), str(d.data["base_path"])): key for key, d in stored.items()}
    wanted = {api_key(a.project, a.name): (index, a) for index, a in enumerate(apis)}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str) -> None:
        index, api = wanted[key]
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise ConfigError(
                f"{api.base_path} is the base path of another API of the file until that one is "
                "written, and that one waits for this one (a swap); apply it in two steps",
                f"body.apis[{index}].base_path",
            )
        state[key] = "visiting"
        holder = holders.get((api.project, api.base_path))
        if holder is not None and holder != key and holder in wanted:
            visit(holder)
        state[key] = "done"
        order.append(key)

    for key in wanted:
        visit(key)
    return order
