"""Consumers, their credentials (secrets shown once) and their access grants."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from portway.config.declarative import ConsumerSpec
from portway.config.management.common import Answer, Versioned


class ConsumerView(ConsumerSpec, Versioned):
    created_at: str | None = None


class CredentialView(Answer):
    id: str
    kind: Annotated[str, Field(description="api_key, basic or digest")]
    label: str
    key_prefix: str | None
    username: str | None
    realm: Annotated[str | None, Field(description="digest only: the realm of its HA1")] = None
    created_at: str | None
    expires_at: str | None
    disabled: bool
    active: bool
    rotated_from: str | None
    replaced_by: str | None
    version: int


class CreatedCredential(CredentialView):
    secret: Annotated[str, Field(description="the API key or password, shown once")]
