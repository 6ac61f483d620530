"""Consumers, their credentials and their access grants.

API keys are 256-bit random strings (``pwk_…``) shown once at creation; only their SHA-256 is
stored, which is also how workers look them up (``CredentialSnapshot.lookup``). Basic credentials
keep an argon2 hash of the password. Digest credentials (RFC 7616) keep HA1 =
H(username:realm:password) per hash instead, computed here when the password is set; the password
itself is never stored, and HA1 never leaves the manager except inside a revision. API clients
(``kind: client``) are a ``client_id`` with versioned secrets (argon2 hashes); basic
authentication and the token endpoint's client_credentials grant accept any live version.
Rotation creates a new key (or a new secret version of a client) and lets the old one live until
the end of a grace period. Grants (consumer → API proxy) live inside the consumer document, so
one versioned write changes a consumer and its grants together.

Workers learn about all of this through ``EnvironmentRevision.consumers``: every change here is
followed by ``Deployer.republish`` (see ``docs/decisions.md``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from portway.config.base import JsonDatetime, Model
from portway.config.declarative import ConsumerSpec, GrantSpec
from portway.config.revision import (
    ConsumerSnapshot,
    CredentialSnapshot,
    GrantSnapshot,
    SecretSnapshot,
    api_key_lookup,
)
from portway.errors import ConfigError, Conflict, DuplicateKey, NotFound
from portway.manager import audit
from portway.manager.auth import hash_password
from portway.manager.paging import read_page
from portway.policies.digest_auth import REALM_PATTERN as DIGEST_REALM_PATTERN
from portway.policies.digest_auth import digest_lookup, make_ha1
from portway.stores.config_store import ConfigStore, Document, Order

API_KEY_PREFIX = "pwk_"
CLIENT_ID_PREFIX = "pwc_"
CLIENT_SECRET_PREFIX = "pwcs_"
MAX_SECRET_VERSIONS = 10
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"
MAX_GRACE = 90 * 86400
DEFAULT_DIGEST_REALM = "portway"


def aware(moment: datetime | None) -> datetime | None:
    """Naive timestamps are taken as UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    found = aware(moment)
    return found.isoformat() if found else None


class CredentialCreate(Model):
    """A new credential; the API key or password is returned once in ``secret``."""

    kind: Literal["api_key", "basic", "digest", "client"] = "api_key"
    label: Annotated[str, Field(max_length=200)] = ""
    expires_at: JsonDatetime | None = None
    key: Annotated[
        str | None,
        Field(
            min_length=24,
            max_length=512,
            pattern=r"^[\x21-\x7e]+$",
            description="bring your own API key (e.g. when migrating); generated when absent",
        ),
    ] = None
    username: Annotated[
        str | None, Field(pattern=USERNAME_PATTERN, description="basic and digest credentials")
    ] = None
    password: Annotated[
        str | None,
        Field(
            min_length=12,
            max_length=1024,
            description="basic and digest; generated when absent",
        ),
    ] = None
    realm: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=100,
            pattern=DIGEST_REALM_PATTERN,
            description="digest only: the realm of the digest_auth policy (default portway)",
        ),
    ] = None
    md5: Annotated[
        bool,
        Field(description="digest only: also keep an MD5 HA1, for policies that allow MD5"),
    ] = False

    client_id: Annotated[
        str | None,
        Field(pattern=USERNAME_PATTERN, description="API clients only; generated when absent"),
    ] = None

    @model_validator(mode="after")
    def _by_kind(self) -> CredentialCreate:
        named = ("basic", "digest")
        if self.kind not in named and (self.username is not None or self.password is not None):
            raise ValueError("username and password belong to basic and digest credentials")
        if self.kind != "api_key" and self.key is not None:
            raise ValueError("key belongs to api_key credentials")
        if self.kind != "client" and self.client_id is not None:
            raise ValueError("client_id belongs to client credentials")
        if self.kind in named and self.username is None:
            raise ValueError(f"{self.kind} credentials need a username")
        if self.kind != "digest" and (self.realm is not None or self.md5):
            raise ValueError("realm and md5 belong to digest credentials")
        return self


class CredentialUpdate(Model):
    """Fields to change; ``expires_at: null`` removes an expiry."""

    label: Annotated[str | None, Field(max_length=200)] = None
    expires_at: JsonDatetime | None = None
    disabled: bool | None = None
    password: Annotated[
        str | None, Field(min_length=12, max_length=1024, description="basic only")
    ] = None


class RotateRequest(Model):
    grace_seconds: Annotated[
        int, Field(ge=0, le=MAX_GRACE, description="how long the old key or secret stays valid")
    ] = 86400
    expires_at: Annotated[
        JsonDatetime | None, Field(description="expiry of the new key or secret")
    ] = None


def grace_end(current_expiry: str | None, grace_seconds: int) -> str:
    """When a rotated key or secret stops working: after the grace period, or at its own expiry
    when that comes first."""
    end = datetime.now(UTC) + timedelta(seconds=grace_seconds)
    if current_expiry and datetime.fromisoformat(current_expiry) < end:
        end = datetime.fromisoformat(current_expiry)
    return end.isoformat()


def _live(expires_at: str | None, moment: datetime) -> bool:
    return not expires_at or datetime.fromisoformat(expires_at) > moment


def secret_view(version: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One secret version of an API client as listed: dates and state, never the hash."""
    moment = now or datetime.now(UTC)
    return {
        "version": version["version"],
        "created_at": version["created_at"],
        "expires_at": version.get("expires_at"),
        "revoked_at": version.get("revoked_at"),
        "active": not version.get("revoked_at") and _live(version.get("expires_at"), moment),
    }


def credential_view(doc: Document, now: datetime | None = None) -> dict[str, Any]:
    data = doc.data
    moment = now or datetime.now(UTC)
    expires = data.get("expires_at")
    expired = bool(expires) and datetime.fromisoformat(str(expires)) <= moment
    return {
        "id": doc.id,
        "kind": data["kind"],
        "label": data.get("label", ""),
        "key_prefix": data.get("key_prefix"),
        "username": data.get("username"),
        "realm": data.get("realm"),
        "client_id": data.get("client_id"),
        "secret_versions": [
            v["version"] for v in data.get("secrets", []) if secret_view(v, moment)["active"]
        ]
        if data["kind"] == "client"
        else None,
        "created_at": data.get("created_at"),
        "expires_at": expires,
        "disabled": bool(data.get("disabled")),
        "active": not data.get("disabled") and not expired,
        "rotated_from": data.get("rotated_from"),
        "replaced_by": data.get("replaced_by"),
        "version": doc.version,
    }


def consumer_view(doc: Document) -> dict[str, Any]:
    return {**doc.data, "version": doc.version}


def _audit_credential(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the audit log keeps of a credential: metadata, never the key, hash or password."""
    if data is None:
        return None
    keep = (
        "kind",
        "label",
        "key_prefix",
        "username",
        "realm",
        "client_id",
        "expires_at",
        "disabled",
    )
    kept = {k: data.get(k) for k in (*keep, "consumer_id")}
    if "secrets" in data:  # versions and dates only: never a hash
        kept["versions"] = [secret_view(v) for v in data["secrets"]]
    return kept


def spec_data(spec: ConsumerSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


class Consumers:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    # consumers ----------------------------------------------------------------------------
    async def all(self) -> list[Document]:
        return await self.store.find("consumers")

    async def page(
        self, *, order: Order = "asc", limit: int, cursor: str | None = None
    ) -> tuple[list[Document], str | None]:
        """One page of consumers by id."""
        return await read_page(
            self.store, "consumers", None, order=order, limit=limit, cursor=cursor
        )

    async def get(self, name: str) -> Document:
        found = await self.store.find("consumers", {"name": name}, limit=1)
        if not found:
            raise NotFound("consumers", name)
        return found[0]

    async def check_grants(
        self,
        grants: Iterable[GrantSpec],
        where: str,
        *,
        apis: set[str] | None = None,
        environments: set[str] | None = None,
    ) -> None:
        """Each grant must name an existing API proxy and existing environments."""
        if apis is None:
            apis = {d.id for d in await self.store.find("apis")}
        if environments is None:
            environments = {d.id for d in await self.store.find("environments")}
        for index, grant in enumerate(grants):
            if f"{grant.project}/{grant.api}" not in apis:
                raise ConfigError(
                    f"no API proxy {grant.project}/{grant.api}", f"{where}[{index}].api"
                )
            for j, env in enumerate(grant.environments):
                if env not in environments:
                    raise ConfigError(
                        f"no environment {env}", f"{where}[{index}].environments[{j}]"
                    )
            for env in grant.limits:
                if env not in environments:
                    raise ConfigError(f"no environment {env}", f"{where}[{index}].limits.{env}")

    async def create(self, spec: ConsumerSpec, actor: str, *, check: bool = True) -> Document:
        if check:
            await self.check_grants(spec.grants, "body.grants")
        data = spec_data(spec) | {"created_at": datetime.now(UTC).isoformat()}
        doc = await self.store.insert("consumers", uuid.uuid4().hex, data)
        await audit.record(
            self.store, actor, "consumer.create", f"consumers/{spec.name}", None, data
        )
        return doc

    async def replace(
        self,
        name: str,
        spec: ConsumerSpec,
        expected_version: int | None,
        actor: str,
        *,
        check: bool = True,
    ) -> Document:
        old = await self.get(name)
        if spec.name != name:
            raise ConfigError("cannot be changed; create a new consumer instead", "body.name")
        if check:
            await self.check_grants(spec.grants, "body.grants")
        data = spec_data(spec) | {"created_at": old.data.get("created_at")}
        if data == old.data:
            return old
        doc = await self.store.replace(
            "consumers", old.id, data, expected_version=expected_version or old.version
        )
        await audit.record(
            self.store, actor, "consumer.update", f"consumers/{name}", old.data, data
        )
        return doc

    async def delete(self, name: str, expected_version: int | None, actor: str) -> None:
        old = await self.get(name)
        await self.store.delete("consumers", old.id, expected_version=expected_version)
        for cred in await self.store.find("credentials", {"consumer_id": old.id}):
            await self.store.delete("credentials", cred.id)
        await audit.record(
            self.store, actor, "consumer.delete", f"consumers/{name}", old.data, None
        )

    # grants -------------------------------------------------------------------------------
    async def put_grant(
        self, name: str, grant: GrantSpec, expected_version: int | None, actor: str
    ) -> tuple[Document, GrantSpec]:
        old = await self.get(name)
        await self.check_grants([grant], "body")
        spec = ConsumerSpec.model_validate(_spec(old))
        grants = [g for g in spec.grants if (g.project, g.api) != (grant.project, grant.api)]
        grants.append(grant)
        grants.sort(key=lambda g: (g.project, g.api))
        updated = ConsumerSpec.model_validate(spec.model_dump() | {"grants": grants})
        doc = await self.replace(name, updated, expected_version, actor, check=False)
        return doc, grant

    async def delete_grant(
        self, name: str, project: str, api: str, expected_version: int | None, actor: str
    ) -> Document:
        old = await self.get(name)
        spec = ConsumerSpec.model_validate(_spec(old))
        grants = [g for g in spec.grants if (g.project, g.api) != (project, api)]
        if len(grants) == len(spec.grants):
            raise NotFound("grants", f"{name}/{project}/{api}")
        updated = ConsumerSpec.model_validate(spec.model_dump() | {"grants": grants})
        return await self.replace(name, updated, expected_version, actor, check=False)

    # credentials --------------------------------------------------------------------------
    async def credentials(self, name: str) -> list[Document]:
        consumer = await self.get(name)
        return await self.store.find("credentials", {"consumer_id": consumer.id})

    async def credential(self, name: str, credential_id: str) -> tuple[Document, Document]:
        consumer = await self.get(name)
        doc = await self.store.get("credentials", credential_id)
        if doc is None or doc.data.get("consumer_id") != consumer.id:
            raise NotFound("credentials", f"{name}/{credential_id}")
        return consumer, doc

    async def add_credential(
        self, name: str, body: CredentialCreate, actor: str, *, rotated_from: str | None = None
    ) -> tuple[Document, str]:
        """Create a credential; returns it and its secret (shown to the caller once)."""
        consumer = await self.get(name)
        now = datetime.now(UTC)
        data: dict[str, Any] = {
            "consumer_id": consumer.id,
            "kind": body.kind,
            "label": body.label,
            "created_at": now.isoformat(),
            "expires_at": _iso(body.expires_at),
            "disabled": False,
            "rotated_from": rotated_from,
            "replaced_by": None,
        }
        if body.kind == "api_key":
            secret = body.key or API_KEY_PREFIX + secrets.token_urlsafe(32)
            data |= {"lookup": api_key_lookup(secret), "key_prefix": secret[:8]}
        elif body.kind == "digest":
            secret = body.password or secrets.token_urlsafe(18)
            assert body.username is not None
            realm = body.realm or DEFAULT_DIGEST_REALM
            data |= {
                "lookup": digest_lookup(body.username, realm),
                "username": body.username,
                "realm": realm,
                "ha1": _ha1(body.username, realm, secret, md5=body.md5),
            }
        elif body.kind == "client":
            client_id = body.client_id or CLIENT_ID_PREFIX + secrets.token_hex(12)
            secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
            version = {
                "version": 1,
                "secret_hash": hash_password(secret),
                "created_at": now.isoformat(),
                "expires_at": None,
                "revoked_at": None,
            }
            data |= {"lookup": client_id, "client_id": client_id, "secrets": [version]}
        else:
            secret = body.password or secrets.token_urlsafe(18)
            assert body.username is not None
            data |= {
                "lookup": body.username,
                "username": body.username,
                "secret_hash": hash_password(secret),
            }
        try:
            doc = await self.store.insert("credentials", uuid.uuid4().hex, data)
        except DuplicateKey:
            what = {"api_key": "API key", "client": "client_id"}.get(body.kind, "username")
            raise Conflict(f"this {what} is already in use") from None
        await audit.record(
            self.store,
            actor,
            "credential.create",
            f"consumers/{name}/credentials/{doc.id}",
            None,
            _audit_credential(data),
        )
        return doc, secret

    async def update_credential(
        self,
        name: str,
        credential_id: str,
        body: CredentialUpdate,
        actor: str,
        expected_version: int | None = None,
    ) -> Document:
        _, old = await self.credential(name, credential_id)
        data = dict(old.data)
        given = body.model_fields_set
        if "label" in given and body.label is not None:
            data["label"] = body.label
        if "expires_at" in given:
            data["expires_at"] = _iso(body.expires_at)
        if "disabled" in given and body.disabled is not None:
            data["disabled"] = body.disabled
        if "password" in given and body.password is not None:
            if old.data["kind"] == "digest":
                data["ha1"] = _ha1(
                    data["username"], data["realm"], body.password, md5="MD5" in data["ha1"]
                )
            elif old.data["kind"] == "basic":
                data["secret_hash"] = hash_password(body.password)
            else:
                raise ConfigError(
                    "only basic and digest credentials have a password", "body.password"
                )
        doc = await self.store.replace(
            "credentials", old.id, data, expected_version=expected_version or old.version
        )
        changes = _audit_credential(data) or {}
        if "password" in given:
            changes["changed"] = "password"
        await audit.record(
            self.store,
            actor,
            "credential.update",
            f"consumers/{name}/credentials/{old.id}",
            _audit_credential(old.data),
            changes,
        )
        return doc

    async def rotate_credential(
        self, name: str, credential_id: str, body: RotateRequest, actor: str
    ) -> tuple[Document, str]:
        """A new API key; the old one stays valid for the grace period, then expires. An API
        client gets a new secret version instead (``rotate_client_secret``)."""
        _, old = await self.credential(name, credential_id)
        if old.data["kind"] == "client":
            return await self.rotate_client_secret(name, old, body, actor)
        if old.data["kind"] != "api_key":
            raise ConfigError(
                "only API keys and clients rotate; change a basic password with PATCH",
                "credential_id",
            )
        if old.data.get("replaced_by"):
            raise ConfigError(
                f"already rotated (replaced by {old.data['replaced_by']})", "credential_id"
            )
        new, secret = await self.add_credential(
            name,
            CredentialCreate(
                kind="api_key", label=old.data.get("label", ""), expires_at=body.expires_at
            ),
            actor,
            rotated_from=old.id,
        )
        data = {
            **old.data,
            "expires_at": grace_end(old.data.get("expires_at"), body.grace_seconds),
            "replaced_by": new.id,
        }
        await self.store.replace("credentials", old.id, data, expected_version=old.version)
        await audit.record(
            self.store,
            actor,
            "credential.rotate",
            f"consumers/{name}/credentials/{old.id}",
            _audit_credential(old.data),
            _audit_credential(data),
        )
        return new, secret

    async def rotate_client_secret(
        self, name: str, old: Document, body: RotateRequest, actor: str
    ) -> tuple[Document, str]:
        """A new secret version of an API client; every live older version stays valid until the
        end of the grace period. Revoked and expired versions beyond the newest
        ``MAX_SECRET_VERSIONS`` are dropped."""
        now = datetime.now(UTC)
        versions = [dict(v) for v in old.data.get("secrets", [])]
        for version in versions:
            if not version.get("revoked_at") and _live(version.get("expires_at"), now):
                version["expires_at"] = grace_end(version.get("expires_at"), body.grace_seconds)
        live = [v for v in versions if secret_view(v, now)["active"]]
        if len(live) >= MAX_SECRET_VERSIONS:
            raise Conflict(
                f"{len(live)} secret versions are still valid; revoke one before rotating again"
            )
        secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
        number = max((int(v["version"]) for v in versions), default=0) + 1
        versions.append(
            {
                "version": number,
                "secret_hash": hash_password(secret),
                "created_at": now.isoformat(),
                "expires_at": _iso(body.expires_at),
                "revoked_at": None,
            }
        )
        kept = [v for v in versions if secret_view(v, now)["active"]]
        spent = [v for v in versions if not secret_view(v, now)["active"]]
        room = MAX_SECRET_VERSIONS - len(kept)
        kept += spent[len(spent) - room :] if room > 0 else []
        versions = sorted(kept, key=lambda v: int(v["version"]))
        data = {**old.data, "secrets": versions}
        doc = await self.store.replace("credentials", old.id, data, expected_version=old.version)
        await audit.record(
            self.store,
            actor,
            "credential.rotate",
            f"consumers/{name}/credentials/{old.id}",
            _audit_credential(old.data),
            _audit_credential(data),
        )
        return doc, secret

    async def secret_versions(self, name: str, credential_id: str) -> list[dict[str, Any]]:
        _, doc = await self.credential(name, credential_id)
        if doc.data["kind"] != "client":
            raise NotFound("secret versions", f"{name}/{credential_id} (not an API client)")
        return [dict(v) for v in doc.data.get("secrets", [])]

    async def revoke_secret(
        self, name: str, credential_id: str, version: int, actor: str
    ) -> dict[str, Any]:
        """A secret version stops working at once (it stays listed, revoked)."""
        _, old = await self.credential(name, credential_id)
        versions = [dict(v) for v in old.data.get("secrets", [])]
        found = next((v for v in versions if v["version"] == version), None)
        if old.data["kind"] != "client" or found is None:
            raise NotFound("secret versions", f"{name}/{credential_id}/{version}")
        if found.get("revoked_at"):
            return found
        found["revoked_at"] = datetime.now(UTC).isoformat()
        data = {**old.data, "secrets": versions}
        await self.store.replace("credentials", old.id, data, expected_version=old.version)
        await audit.record(
            self.store,
            actor,
            "credential.revoke_secret",
            f"consumers/{name}/credentials/{old.id}/secrets/{version}",
            _audit_credential(old.data),
            _audit_credential(data),
        )
        return found

    async def delete_credential(self, name: str, credential_id: str, actor: str) -> None:
        _, old = await self.credential(name, credential_id)
        await self.store.delete("credentials", old.id)
        await audit.record(
            self.store,
            actor,
            "credential.delete",
            f"consumers/{name}/credentials/{old.id}",
            _audit_credential(old.data),
            None,
        )

    # what workers see ---------------------------------------------------------------------
    async def snapshot(self, environment: str) -> list[ConsumerSnapshot]:
        """Every consumer as workers of ``environment`` see it: hashes only, this env's limits."""
        creds: dict[str, list[CredentialSnapshot]] = {}
        for doc in await self.store.find("credentials"):
            data = doc.data
            creds.setdefault(str(data["consumer_id"]), []).append(
                CredentialSnapshot(
                    id=doc.id,
                    kind=data["kind"],
                    lookup=data["lookup"],
                    secret_hash=data.get("secret_hash"),
                    username=data.get("username") if data["kind"] == "digest" else None,
                    realm=data.get("realm"),
                    ha1=data.get("ha1") or {},
                    secrets=[
                        SecretSnapshot(
                            version=v["version"],
                            secret_hash=v["secret_hash"],
                            expires_at=v.get("expires_at"),
                        )
                        for v in data.get("secrets", [])
                        if not v.get("revoked_at")
                    ],
                    expires_at=data.get("expires_at"),
                    disabled=bool(data.get("disabled")),
                )
            )
        out = []
        for doc in sorted(await self.all(), key=lambda d: str(d.data["name"])):
            spec = ConsumerSpec.model_validate(_spec(doc))
            grants = []
            for grant in spec.grants:
                limits = grant.limits.get(environment)
                grants.append(
                    GrantSnapshot(
                        api=grant.api,
                        project=grant.project,
                        expires_at=aware(grant.expires_at),
                        environments=list(grant.environments),
                        quota=limits.quota if limits else None,
                        throttling=limits.throttling if limits else None,
                    )
                )
            out.append(
                ConsumerSnapshot(
                    id=doc.id,
                    name=spec.name,
                    disabled=spec.disabled,
                    roles=list(spec.roles),
                    ip_allow=list(spec.ip_allow),
                    metadata=dict(spec.metadata),
                    credentials=sorted(creds.get(doc.id, []), key=lambda c: c.id),
                    grants=grants,
                )
            )
        return out


def _ha1(username: str, realm: str, password: str, *, md5: bool) -> dict[str, str]:
    """HA1 per hash, computed once when the password is set (the password is not kept)."""
    hashes = ["SHA-256", "MD5"] if md5 else ["SHA-256"]
    return {name: make_ha1(name, username, realm, password) for name in hashes}


def _spec(doc: Document) -> dict[str, Any]:
    """The consumer document without the fields the manager adds."""
    return {k: v for k, v in doc.data.items() if k != "created_at"}
