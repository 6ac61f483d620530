"""API key authentication: the key comes from a header or a query parameter and is looked up by
its sha256 hash in the revision's consumers; consumer, credential and grant are checked."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from portway.config.revision import api_key_lookup
from portway.policies._headers import is_header_name
from portway.policies.base import Deny, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    check_consumer,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply

MAX_KEY_LENGTH = 1024


class ApiKeyConfig(AuthOptions):
    location: Annotated[
        Literal["header", "query"], Field(description="where the client sends its key")
    ] = "header"
    key_name: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=100,
            description="header or query parameter name (default X-Api-Key / apikey)",
        ),
    ] = None
    check_grant: Annotated[
        bool, Field(description="require the consumer to hold a grant for this API")
    ] = True

    @model_validator(mode="after")
    def _rules(self) -> ApiKeyConfig:
        if self.location == "header" and self.key_name and not is_header_name(self.key_name):
            raise ValueError(f"key_name {self.key_name!r} is not a valid header name")
        return self

    @property
    def name(self) -> str:
        return self.key_name or ("X-Api-Key" if self.location == "header" else "apikey")


class ApiKeyPolicy(Policy[ApiKeyConfig]):
    type_name = "api_key"
    summary = "Authenticate the consumer by an API key sent in a header or a query parameter."
    config_model = ApiKeyConfig
    errors = AUTH_ERRORS

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        if cfg.location == "header":
            key = ctx.request.headers.get(cfg.name)
        else:
            key = ctx.request.query_get(cfg.name)
        if not key:
            raise Deny("missing_credentials")
        if len(key) > MAX_KEY_LENGTH:
            raise Deny("invalid_credentials")
        found = self.build.consumers.by_key_hash.get(api_key_lookup(key))
        if found is None:
            raise Deny("invalid_credentials")
        consumer, credential = found
        check_consumer(
            ctx, consumer, credential, self.services.clock(), require_grant=cfg.check_grant
        )
        apply_identity(ctx, cfg, consumer.name, consumer.roles, self.build.consumers)
        ctx.variables["credential_id"] = credential.id
        if cfg.strip_credential:
            if cfg.location == "header":
                ctx.request.headers.remove(cfg.name)
            else:
                ctx.request.query[:] = [(k, v) for k, v in ctx.request.query if k != cfg.name]
        return None
