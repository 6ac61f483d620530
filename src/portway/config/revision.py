"""What a worker pulls: the complete configuration of one environment at one revision.

The manager builds an ``EnvironmentRevision`` on every deploy, undeploy or rollback, numbers
it with a monotonically increasing ``revision`` per environment, and keeps it immutable. A
worker swaps its whole routing table to a new revision at once, so no request ever sees two
revisions mixed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from portway.config.base import JsonDatetime, Model, Slug
from portway.config.models import ApiProxy, PolicySpec


class DeployedApi(Model):
    api: ApiProxy
    api_revision: Annotated[int, Field(ge=1, description="revision of the API proxy deployed")]


def api_key_lookup(key: str) -> str:
    """How an API key is stored (``CredentialSnapshot.lookup``) and looked up by the ``api_key``
    policy: the sha256 hex of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class SecretSnapshot(Model):
    """One live secret version of an API client."""

    version: Annotated[int, Field(ge=1)]
    secret_hash: Annotated[str, Field(description="argon2 hash of the secret")]
    expires_at: JsonDatetime | None = None


class CredentialSnapshot(Model):
    """A consumer credential as workers see it: hashes only, never the secret."""

    id: str
    kind: Annotated[str, Field(pattern=r"^(api_key|basic|digest|client)$")]
    lookup: Annotated[
        str,
        Field(
            description="sha256 hex of the API key, the basic username, the client_id, or "
            "'digest:<username>:<realm>'"
        ),
    ]
    secret_hash: Annotated[str | None, Field(description="argon2 hash of a password")] = None
    username: Annotated[str | None, Field(description="digest only: the username")] = None
    realm: Annotated[str | None, Field(description="digest only: the realm HA1 was made for")] = (
        None
    )
    ha1: Annotated[
        dict[str, str],
        Field(
            description="digest only: H(username:realm:password) hex per hash ('SHA-256', "
            "and 'MD5' when the credential allows it); the password itself is never kept"
        ),
    ] = Field(default_factory=dict)
    secrets: Annotated[
        list[SecretSnapshot],
        Field(description="an API client's secret versions (any one that has not expired works)"),
    ] = Field(default_factory=list)
    expires_at: JsonDatetime | None = None
    disabled: bool = False


class GrantQuota(Model):
    """A consumer's quota on one API in one environment."""

    limit: Annotated[int, Field(ge=1, le=10**12, description="requests per period")]
    period: Annotated[str, Field(pattern=r"^(hour|day|week|month)$")] = "day"


class GrantThrottle(Model):
    """A consumer's throttling on one API in one environment."""

    limit: Annotated[int, Field(ge=1, le=10**9, description="requests per interval")]
    interval: Annotated[float, Field(gt=0, le=86400, description="seconds")] = 1.0


class GrantSnapshot(Model):
    api: Slug
    project: Slug = "default"
    expires_at: JsonDatetime | None = None
    environments: list[str] = Field(default_factory=list)
    quota: Annotated[
        GrantQuota | None, Field(description="this environment's quota for the consumer")
    ] = None
    throttling: Annotated[
        GrantThrottle | None, Field(description="this environment's throttling for the consumer")
    ] = None


class ConsumerSnapshot(Model):
    id: str
    name: str
    disabled: bool = False
    roles: list[str] = Field(default_factory=list)
    ip_allow: Annotated[
        list[str], Field(description="CIDRs the consumer may call from; empty: any address")
    ] = Field(default_factory=list)
    metadata: Annotated[
        dict[str, str], Field(description="the consumer's attributes (consumer.metadata.KEY)")
    ] = Field(default_factory=dict)
    credentials: list[CredentialSnapshot] = Field(default_factory=list)
    grants: list[GrantSnapshot] = Field(default_factory=list)


class SigningKeySnapshot(Model):
    """One of the environment's JWT signing keys, as workers see it."""

    kid: Annotated[str, Field(min_length=1, max_length=100, description="'kid' of its tokens")]
    algorithm: Literal["RS256", "ES256"]
    public_jwk: Annotated[
        dict[str, Any], Field(description="the public key as a JWK, as the JWKS publishes it")
    ]
    private_key: Annotated[
        str | None,
        Field(description="PEM private key; only the current key carries one (workers sign)"),
    ] = None
    current: Annotated[bool, Field(description="the key new tokens are signed with")] = False
    retire_at: Annotated[
        JsonDatetime | None,
        Field(description="a previous key: published and accepted until then"),
    ] = None


class EnvironmentRevision(Model):
    environment: Slug
    revision: Annotated[int, Field(ge=0)]
    created_at: JsonDatetime
    apis: list[DeployedApi] = Field(default_factory=list)
    global_policies: dict[str, PolicySpec] = Field(default_factory=dict)
    consumers: list[ConsumerSnapshot] = Field(default_factory=list)
    nonce_secret: Annotated[
        str,
        Field(
            description="random per revision: the key workers sign stateless nonces with "
            "(HTTP Digest); empty in revisions not built by a manager"
        ),
    ] = ""
    signing_keys: Annotated[
        list[SigningKeySnapshot],
        Field(description="the environment's JWT signing keys: the current one and those retiring"),
    ] = Field(default_factory=list)

    @classmethod
    def read_for_serving(cls, raw: str | bytes) -> EnvironmentRevision:
        """Parse a revision a worker will only read, one API at a time, its default parts shared.

        An API proxy is some fourteen models (connection, health checks, breaker, capture
        regions, ...), mostly at their defaults: parsed whole, 10,000 APIs cost ~95 MB. Parsing
        API by API and making every part left at its defaults one shared instance per model class
        lets each API's default parts be freed (and their memory reused) before the next is
        parsed. Nothing may modify the result. Raises ``ValueError`` naming the API at fault.
        """
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("a revision is a JSON object")
        items = doc.pop("apis", [])
        revision = cls.model_validate(doc)
        if not isinstance(items, list):
            raise ValueError("apis: a list is required")
        shared: dict[type[BaseModel], BaseModel] = {}
        for index, item in enumerate(items):
            try:
                deployed = DeployedApi.model_validate(item)
            except ValidationError as exc:
                raise ValueError(f"apis[{index}]: {exc}") from None
            _share_defaults(deployed.api, shared)
            revision.apis.append(deployed)
        return revision


def _share_defaults(model: BaseModel, shared: dict[type[BaseModel], BaseModel]) -> None:
    fields = model.__dict__
    for name, value in fields.items():
        if isinstance(value, BaseModel):
            if value.model_fields_set:
                _share_defaults(value, shared)
            else:  # every field at its default: equal to any other instance left at defaults
                fields[name] = shared.setdefault(type(value), value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _share_defaults(item, shared)
