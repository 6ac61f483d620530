"""Per-environment variables in the store: written by environment managers, audited with secret
values masked, read back with secret values masked, and handed whole to the deployer.

One document per variable in ``environment_variables`` (key ``environment/NAME``); a secret value
is sealed at rest like a policy secret (``sealing``). Writing ``"***"`` as a secret's value keeps
the stored one, and may not turn the variable into a non-secret one (that would reveal it).
"""

from __future__ import annotations

from typing import Any

from portway.config.variables import RevisionVariable, VariableBody
from portway.errors import ConfigError, NotFound
from portway.manager import audit
from portway.policies.secrets import MASK
from portway.stores.config_store import ConfigStore, Document

COLLECTION = "environment_variables"


def _key(environment: str, name: str) -> str:
    return f"{environment}/{name}"


def masked(data: dict[str, Any]) -> dict[str, Any]:
    """A stored variable as anyone may read it: a secret's value is ``"***"``."""
    return {**data, "value": MASK} if data.get("secret") else dict(data)


class EnvironmentVariables:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    async def listing(self, environment: str) -> list[Document]:
        docs = await self.store.find(COLLECTION, {"environment": environment})
        return sorted(docs, key=lambda d: str(d.data["name"]))

    async def get(self, environment: str, name: str) -> Document:
        doc = await self.store.get(COLLECTION, _key(environment, name))
        if doc is None:
            raise NotFound(COLLECTION, _key(environment, name))
        return doc

    async def put(
        self,
        environment: str,
        name: str,
        body: VariableBody,
        expected_version: int | None,
        actor: str,
    ) -> tuple[Document, bool]:
        """Create or replace; returns the document and whether it was created."""
        old = await self.store.get(COLLECTION, _key(environment, name))
        value = body.value
        if value == MASK:
            if old is None or not old.data.get("secret"):
                raise ConfigError(
                    f"{MASK!r} keeps a stored secret value, and there is none: send the value",
                    "body.value",
                )
            if not body.secret:
                raise ConfigError(
                    "a secret variable becomes a plain one only with a new value (send it)",
                    "body.secret",
                )
            value = old.data["value"]
        data = {"environment": environment, "name": name, **body.model_dump(), "value": value}
        if old is None:
            doc = await self.store.insert(COLLECTION, _key(environment, name), data)
        else:
            doc = await self.store.replace(
                COLLECTION, old.id, data, expected_version=expected_version or old.version
            )
        await audit.record(
            self.store,
            actor,
            "environment_variable.create" if old is None else "environment_variable.update",
            f"environments/{environment}/variables/{name}",
            None if old is None else _audited(old.data),
            _audited(data),
        )
        return doc, old is None

    async def delete(
        self, environment: str, name: str, expected_version: int | None, actor: str
    ) -> None:
        old = await self.get(environment, name)
        await self.store.delete(COLLECTION, old.id, expected_version=expected_version)
        await audit.record(
            self.store,
            actor,
            "environment_variable.delete",
            f"environments/{environment}/variables/{name}",
            _audited(old.data),
            None,
        )

    async def delete_all(self, environment: str) -> None:
        """Drop an environment's variables (the environment is gone)."""
        for doc in await self.store.find(COLLECTION, {"environment": environment}):
            await self.store.delete(COLLECTION, doc.id)

    async def values(self, environment: str) -> dict[str, RevisionVariable]:
        """Every variable of ``environment`` as a revision is built with it."""
        return {
            str(d.data["name"]): RevisionVariable(
                value=d.data["value"], secret=bool(d.data.get("secret"))
            )
            for d in await self.store.find(COLLECTION, {"environment": environment})
        }


def _audited(data: dict[str, Any]) -> dict[str, Any]:
    # a secret's value never reaches the audit record, not even as a diff of two masks
    return masked(data)
