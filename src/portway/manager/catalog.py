"""Environments, projects and API proxies: validated on write, versioned, audited."""

from __future__ import annotations

from typing import Any

from portway.config.models import ApiProxy, Environment, Project
from portway.errors import NotFound
from portway.manager import audit
from portway.manager.validation import validate_api
from portway.stores.config_store import ConfigStore, Document


def api_key(project: str, name: str) -> str:
    return f"{project}/{name}"


class Catalog:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    # environments -------------------------------------------------------------------------
    async def create_environment(self, env: Environment, actor: str) -> Document:
        data = env.model_dump(mode="json") | {"desired_revision": None}
        doc = await self.store.insert("environments", env.name, data)
        await audit.record(self.store, actor, "environment.create", f"environments/{env.name}", None, data)
        return doc

    async def environment(self, name: str) -> Document:
        doc = await self.store.get("environments", name)
        if doc is None:
            raise NotFound("environments", name)
        return doc

    async def environments(self) -> list[Document]:
        return await self.store.find("environments")

    # projects -----------------------------------------------------------------------------
    async def create_project(self, project: Project, actor: str) -> Document:
        data = project.model_dump(mode="json")
        doc = await self.store.insert("projects", project.name, data)
        await audit.record(self.store, actor, "project.create", f"projects/{project.name}", None, data)
        return doc

    async def ensure_project(self, name: str) -> None:
        if await self.store.get("projects", name) is None:
            raise NotFound("projects", name)

    async def projects(self) -> list[Document]:
        return await self.store.find("projects")

    # API proxies --------------------------------------------------------------------------
    async def create_api(self, api: ApiProxy, actor: str) -> Document:
        await self.ensure_project(api.project)
        validate_api(api)
        data = api.model_dump(mode="json")
        key = api_key(api.project, api.name)
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

    async def update_api(
        self, project: str, name: str, api: ApiProxy, expected_version: int, actor: str
    ) -> Document:
        old = await self.api(project, name)
        validate_api(api)
        if api.project != project or api.name != name:
            from portway.errors import ConfigError

            raise ConfigError("cannot be changed; create a new API proxy instead", "body.name")
        data: dict[str, Any] = api.model_dump(mode="json")
        doc = await self.store.replace(
            "apis", old.id, data, expected_version=expected_version
        )
        await audit.record(self.store, actor, "api.update", f"apis/{old.id}", old.data, data)
        return doc

    async def delete_api(self, project: str, name: str, expected_version: int | None, actor: str) -> None:
        old = await self.api(project, name)
        await self.store.delete("apis", old.id, expected_version=expected_version)
        await audit.record(self.store, actor, "api.delete", f"apis/{old.id}", old.data, None)
