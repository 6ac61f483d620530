"""The declarative configuration file (``portway export`` / ``portway apply -f``) and its schema.

A file holds sections: environments, projects, global policies, API proxies and consumers (with
their access grants). A section that is absent is not managed by the file: ``apply`` leaves it
alone, even with ``--prune``. A section that is present (even empty) is the whole truth for its
kind when pruning. Secrets never appear here: credentials (API keys, passwords) are created through
the API and shown once; users and tokens are not declarative either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from portway.config.base import JsonDatetime, Model, Slug
from portway.config.models import ApiProxy, Environment, PolicySpec, Project
from portway.config.revision import GrantQuota, GrantThrottle
from portway.config.worker_settings import check_networks

CONSUMER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
ConsumerName = Annotated[
    str,
    Field(
        pattern=CONSUMER_NAME_PATTERN,
        description="letters, digits, '.', '_', '@' and '-' (max 100)",
    ),
]
SCHEMA_ID = "https://portway.dev/schemas/declarative-v1.json"
MAX_IP_ALLOW = 100
MAX_METADATA = 50
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_email(value: str) -> str:
    """An address ``local@domain`` (RFC 5321 lengths, dot-atom local part, a dotted DNS name of
    letters, digits and hyphens); ``ValueError`` naming what is wrong."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("an email address needs local@domain")
    if len(value) > 254 or len(local) > 64:
        raise ValueError("an email address has at most 64 characters before @ and 254 in all")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise ValueError(f"{local!r} is not a valid local part (before @)")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_EMAIL_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{domain!r} is not a valid domain name (after @)")
    if labels[-1].isdigit():
        raise ValueError(f"{domain!r} is not a domain name")
    return value


Email = Annotated[str, Field(max_length=254), AfterValidator(check_email)]
MetadataKey = Annotated[str, Field(pattern=METADATA_KEY_PATTERN)]
MetadataValue = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]


class GlobalPolicy(PolicySpec):
    """A policy shared by several proxies: entries refer to it with ``global_ref: NAME``."""

    name: Slug


class GrantLimits(Model):
    """A consumer's limits on one API in one environment."""

    quota: GrantQuota | None = None
    throttling: GrantThrottle | None = None


class GrantTerms(Model):
    """The terms of a grant: until when, where, and with which limits."""

    expires_at: Annotated[JsonDatetime | None, Field(description="no access from this moment")] = (
        None
    )
    environments: Annotated[
        list[Slug], Field(max_length=100, description="where the grant holds; empty = everywhere")
    ] = Field(default_factory=list)
    limits: Annotated[
        dict[Slug, GrantLimits], Field(description="per-environment quota and throttling")
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _limits_in_environments(self) -> GrantTerms:
        if len(set(self.environments)) != len(self.environments):
            raise ValueError("environments must not repeat")
        if self.environments:
            outside = sorted(set(self.limits) - set(self.environments))
            if outside:
                raise ValueError(
                    f"limits name environments the grant does not allow: {', '.join(outside)}"
                )
        return self


class GrantSpec(GrantTerms):
    """Access for one consumer to one API proxy."""

    project: Slug = "default"
    api: Slug


class ConsumerSpec(Model):
    """An application or person calling APIs through the gateway."""

    name: ConsumerName
    description: Annotated[str, Field(max_length=1000)] = ""
    disabled: bool = False
    roles: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)
    ] = Field(default_factory=list)
    grants: Annotated[list[GrantSpec], Field(max_length=10000)] = Field(default_factory=list)
    email: Annotated[Email | None, Field(description="contact address (stays in the manager)")] = (
        None
    )
    ip_allow: Annotated[
        list[Annotated[str, Field(max_length=50)]],
        AfterValidator(check_networks),
        Field(
            max_length=MAX_IP_ALLOW,
            description="IPv4/IPv6 addresses or CIDRs the consumer may call from (empty: any)",
        ),
    ] = Field(default_factory=list)
    metadata: Annotated[
        dict[MetadataKey, MetadataValue],
        Field(
            max_length=MAX_METADATA,
            description="key/value attributes; policies read them as consumer.metadata.KEY",
        ),
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_grants(self) -> ConsumerSpec:
        _unique([(g.project, g.api) for g in self.grants], "grants: {} is granted twice")
        _unique(self.ip_allow, "ip_allow: {} appears twice")
        return self


def _unique(keys: Sequence[Any], message: str) -> None:
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            shown = "/".join(key) if isinstance(key, tuple) else str(key)
            raise ValueError(message.format(shown))
        seen.add(key)


class DeclarativeConfig(Model):
    """The whole file. Sections left out are not managed by it."""

    portway: Annotated[Literal[1], Field(description="format version of this file")] = 1
    environments: list[Environment] | None = None
    projects: list[Project] | None = None
    global_policies: list[GlobalPolicy] | None = None
    apis: list[ApiProxy] | None = None
    consumers: list[ConsumerSpec] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> DeclarativeConfig:
        _unique([e.name for e in self.environments or []], "environments: {} appears twice")
        _unique([p.name for p in self.projects or []], "projects: {} appears twice")
        _unique([g.name for g in self.global_policies or []], "global_policies: {} appears twice")
        _unique([(a.project, a.name) for a in self.apis or []], "apis: {} appears twice")
        _unique([c.name for c in self.consumers or []], "consumers: {} appears twice")
        return self


def declarative_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the file (draft 2020-12), for editors and CI checks."""
    schema = DeclarativeConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Portway declarative configuration",
        **schema,
    }
