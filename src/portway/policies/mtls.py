"""mTLS client-certificate authentication, when the worker terminates TLS: the handshake has
verified the chain; this policy decides which verified certificates may call the API and maps
one to a consumer. ``ctx.tls_peer_cert`` has the shape of ``ssl.SSLSocket.getpeercert()``."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from portway.policies.base import Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    check_consumer,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply


def _names(cert: Mapping[str, Any], part: str, key: str) -> list[str]:
    out: list[str] = []
    for rdn in cert.get(part, ()) or ():
        for pair in rdn:
            if len(pair) == 2 and pair[0] == key and isinstance(pair[1], str):
                out.append(pair[1])
    return out


def _san(cert: Mapping[str, Any], kind: str) -> list[str]:
    return [
        v
        for entry in cert.get("subjectAltName", ()) or ()
        if len(entry) == 2 and entry[0] == kind and isinstance(v := entry[1], str)
    ]


class MtlsConfig(AuthOptions):
    allowed_subjects: Annotated[
        list[str], Field(max_length=1000, description="accepted subject CNs (empty: any)")
    ] = Field(default_factory=list)
    allowed_issuers: Annotated[
        list[str], Field(max_length=100, description="accepted issuer CNs (empty: any)")
    ] = Field(default_factory=list)
    allowed_dns_names: Annotated[
        list[str], Field(max_length=1000, description="accepted DNS subjectAltNames (empty: any)")
    ] = Field(default_factory=list)
    consumer_from: Annotated[
        Literal["subject_cn", "san_dns"], Field(description="what names the consumer")
    ] = "subject_cn"
    check_consumer: Annotated[
        bool, Field(description="the consumer must exist in the consumer store with a grant")
    ] = False


class MtlsPolicy(Policy[MtlsConfig]):
    type_name = "mtls"
    summary = "Authenticate clients by their TLS client certificate (subject, issuer, SAN)."
    config_model = MtlsConfig
    errors = {
        **AUTH_ERRORS,
        "missing_credentials": ErrorSpec(401, "a client certificate is required"),
        "certificate_not_allowed": ErrorSpec(403, "the client certificate is not allowed"),
    }

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        cert = ctx.tls_peer_cert
        if not cert or ctx.scheme != "https":
            raise Deny("missing_credentials")
        not_after = cert.get("notAfter")
        try:
            if not isinstance(not_after, str):
                raise ValueError(not_after)
            expired = ssl.cert_time_to_seconds(not_after) <= self.services.clock()
        except ValueError:
            raise Deny("invalid_credentials") from None
        if expired:
            raise Deny("expired_credentials")
        subjects = _names(cert, "subject", "commonName")
        issuers = _names(cert, "issuer", "commonName")
        dns = _san(cert, "DNS")
        if cfg.allowed_subjects and not set(subjects) & set(cfg.allowed_subjects):
            raise Deny("certificate_not_allowed")
        if cfg.allowed_issuers and not set(issuers) & set(cfg.allowed_issuers):
            raise Deny("certificate_not_allowed")
        if cfg.allowed_dns_names and not set(dns) & set(cfg.allowed_dns_names):
            raise Deny("certificate_not_allowed")
        names = subjects if cfg.consumer_from == "subject_cn" else dns
        if not names:
            raise Deny("invalid_credentials")
        consumer_name = names[0]
        roles: list[str] = []
        if cfg.check_consumer:
            consumer = self.build.consumers.by_name.get(consumer_name)
            if consumer is None:
                raise Deny("access_denied")
            check_consumer(ctx, consumer, None, self.services.clock(), require_grant=True)
            roles = list(consumer.roles)
        apply_identity(ctx, cfg, consumer_name, roles, self.build.consumers)
        return None
