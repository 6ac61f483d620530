"""The consumer index a revision carries (with the environment's nonce secret and signing keys),
and the checks every authentication policy shares."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from portway.config.revision import (
    ConsumerSnapshot,
    CredentialSnapshot,
    EnvironmentRevision,
    GrantSnapshot,
)
from portway.policies._headers import check_header_name, clean_header_value
from portway.policies.base import Deny, ErrorSpec, PolicyConfig
from portway.policies.contract import PolicyContext
from portway.policies.ip_filter import IpNetwork, parse_address, within
from portway.policies.signing_keys import EnvironmentKeys
from portway.policies.variables import CONSUMER_METADATA


@dataclass(frozen=True, slots=True)
class ConsumerIndex:
    """Immutable lookups built once per revision."""

    by_key_hash: dict[str, tuple[ConsumerSnapshot, CredentialSnapshot]] = field(
        default_factory=dict
    )
    by_username: dict[str, tuple[ConsumerSnapshot, CredentialSnapshot]] = field(
        default_factory=dict
    )
    by_name: dict[str, ConsumerSnapshot] = field(default_factory=dict)
    by_digest: dict[str, tuple[ConsumerSnapshot, CredentialSnapshot]] = field(default_factory=dict)
    """digest credentials by ``lookup`` (``digest:<username>:<realm>``)"""
    nonce_secret: bytes = b""
    keys: EnvironmentKeys = field(default_factory=EnvironmentKeys)
    """the environment's JWT signing keys"""
    ip_allow: dict[str, list[IpNetwork]] = field(default_factory=dict)
    """consumer name -> the networks of its IP allow list (only consumers that have one)"""

    @classmethod
    def build(
        cls,
        consumers: Sequence[ConsumerSnapshot],
        nonce_secret: bytes = b"",
        keys: EnvironmentKeys | None = None,
    ) -> ConsumerIndex:
        index = cls(nonce_secret=nonce_secret, keys=keys or EnvironmentKeys())
        for consumer in consumers:
            index.by_name[consumer.name] = consumer
            if consumer.ip_allow:
                index.ip_allow[consumer.name] = [
                    ipaddress.ip_network(cidr, strict=False) for cidr in consumer.ip_allow
                ]
            for cred in consumer.credentials:
                if cred.kind == "api_key":
                    target = index.by_key_hash
                elif cred.kind == "digest":
                    target = index.by_digest
                else:
                    target = index.by_username
                target[cred.lookup] = (consumer, cred)
        return index

    @classmethod
    def for_revision(cls, revision: EnvironmentRevision) -> ConsumerIndex:
        return cls.build(
            revision.consumers,
            revision.nonce_secret.encode(),
            EnvironmentKeys.build(revision.signing_keys),
        )


AUTH_ERRORS: dict[str, ErrorSpec] = {
    "missing_credentials": ErrorSpec(401, "credentials are required"),
    "invalid_credentials": ErrorSpec(401, "the credentials are not valid"),
    "expired_credentials": ErrorSpec(401, "the credentials have expired"),
    "consumer_disabled": ErrorSpec(403, "the consumer is disabled"),
    "access_denied": ErrorSpec(403, "the consumer has no access to this API"),
    "grant_expired": ErrorSpec(403, "the consumer's access to this API has expired"),
    "environment_not_allowed": ErrorSpec(
        403, "the consumer's access does not include this environment"
    ),
    "missing_role": ErrorSpec(403, "the consumer lacks a required role"),
    "address_not_allowed": ErrorSpec(
        403, "the client address is not in the consumer's IP allow list"
    ),
}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moment(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def check_consumer(
    ctx: PolicyContext,
    consumer: ConsumerSnapshot,
    credential: CredentialSnapshot | None,
    now: float,
    *,
    require_grant: bool,
) -> GrantSnapshot | None:
    """Raise ``Deny`` unless the consumer (and credential) may call this API here and now."""
    if credential is not None:
        if credential.disabled:
            raise Deny("invalid_credentials")
        if credential.expires_at is not None and _aware(credential.expires_at) <= _moment(now):
            raise Deny("expired_credentials")
    if consumer.disabled:
        raise Deny("consumer_disabled")
    if not require_grant:
        return None
    grants = [g for g in consumer.grants if g.api == ctx.api and g.project == ctx.project]
    if not grants:
        raise Deny("access_denied")
    live = [g for g in grants if g.expires_at is None or _aware(g.expires_at) > _moment(now)]
    if not live:
        raise Deny("grant_expired")
    for grant in live:
        if not grant.environments or ctx.environment in grant.environments:
            return grant
    raise Deny("environment_not_allowed")


def grant_for(index: ConsumerIndex, ctx: PolicyContext, now: float) -> GrantSnapshot | None:
    """The live grant of the authenticated consumer for this API and environment, if any."""
    consumer = index.by_name.get(ctx.consumer) if ctx.consumer else None
    if consumer is None:
        return None
    for grant in consumer.grants:
        if (
            grant.api == ctx.api
            and grant.project == ctx.project
            and (not grant.environments or ctx.environment in grant.environments)
            and (grant.expires_at is None or _aware(grant.expires_at) > _moment(now))
        ):
            return grant
    return None


class AuthOptions(PolicyConfig):
    """Options shared by authentication policies."""

    strip_credential: Annotated[
        bool, Field(description="remove the credential before forwarding to the backend")
    ] = True
    consumer_header: Annotated[
        str | None,
        Field(description="header that carries the authenticated consumer to the backend"),
    ] = "X-Consumer"
    roles_header: Annotated[
        str | None, Field(description="header that carries the consumer's roles (comma-separated)")
    ] = None
    required_roles: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]],
        Field(max_length=50, description="roles the consumer must hold"),
    ] = Field(default_factory=list)
    roles_mode: Annotated[
        Literal["all", "any"], Field(description="whether all or any of required_roles suffice")
    ] = "all"

    @field_validator("consumer_header", "roles_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        return None if value is None else check_header_name(value)


def check_address(ctx: PolicyContext, index: ConsumerIndex, consumer: str) -> None:
    """``Deny`` (403 naming the rule) when the consumer has an IP allow list and the client address
    — the worker's view of it, ``X-Forwarded-For`` believed only from its trusted proxies — is
    outside it."""
    networks = index.ip_allow.get(consumer)
    if networks is None:
        return
    address = parse_address(ctx.client_ip)
    if address is None or not within(address, networks):
        raise Deny("address_not_allowed", details={"rule": f"consumers/{consumer}/ip_allow"})


def apply_identity(
    ctx: PolicyContext,
    options: AuthOptions,
    consumer: str,
    roles: Sequence[str],
    index: ConsumerIndex,
) -> None:
    """Record the authenticated consumer, check its IP allow list and roles, make its metadata
    available (``consumer.metadata.KEY``) and pass identity headers downstream.

    Identity headers are always removed from the incoming request first, so a client can never
    forge them, whatever the outcome."""
    check_address(ctx, index, consumer)
    if options.required_roles:
        held = set(roles)
        wanted = set(options.required_roles)
        ok = wanted <= held if options.roles_mode == "all" else bool(wanted & held)
        if not ok:
            raise Deny("missing_role")
    ctx.consumer = consumer
    ctx.roles = tuple(roles)
    known = index.by_name.get(consumer)
    ctx.variables[CONSUMER_METADATA] = dict(known.metadata) if known is not None else {}
    if options.consumer_header:
        ctx.request.headers.set(options.consumer_header, clean_header_value(consumer))
    if options.roles_header:
        ctx.request.headers.set(options.roles_header, clean_header_value(",".join(roles)))


def scrub_identity_headers(ctx: PolicyContext, options: AuthOptions) -> None:
    for name in (options.consumer_header, options.roles_header):
        if name:
            ctx.request.headers.remove(name)
