"""What a worker pulls: the complete configuration of one environment at one revision.

The manager builds an ``EnvironmentRevision`` on every deploy, undeploy or rollback, numbers
it with a monotonically increasing ``revision`` per environment, and keeps it immutable. A
worker swaps its whole routing table to a new revision at once, so no request ever sees two
revisions mixed.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field

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
    kind: Annotated[str, Field(pattern=r"^(api_key|basic|client)$")]
    lookup: Annotated[
        str,
        Field(description="sha256 hex of the API key, the basic username or the client_id"),
    ]
    secret_hash: Annotated[str | None, Field(description="argon2 hash of a password")] = None
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


class EnvironmentRevision(Model):
    environment: Slug
    revision: Annotated[int, Field(ge=0)]
    created_at: JsonDatetime
    apis: list[DeployedApi] = Field(default_factory=list)
    global_policies: dict[str, PolicySpec] = Field(default_factory=dict)
    consumers: list[ConsumerSnapshot] = Field(default_factory=list)
