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
    kind: Annotated[str, Field(description="api_key, basic, digest or client")]
    label: str
    key_prefix: str | None
    username: str | None
    realm: Annotated[str | None, Field(description="digest only: the realm of its HA1")] = None
    client_id: Annotated[str | None, Field(description="API clients: the client_id")] = None
    secret_versions: Annotated[
        list[int] | None, Field(description="API clients: the versions of the secret that work")
    ] = None
    created_at: str | None
    expires_at: str | None
    disabled: bool
    active: bool
    rotated_from: str | None
    replaced_by: str | None
    version: int


class CreatedCredential(CredentialView):
    secret: Annotated[str, Field(description="the API key, password or client secret, shown once")]
    secret_version: Annotated[
        int | None, Field(description="API clients: the version of this secret")
    ] = None


class SecretVersionView(Answer):
    """One secret version of an API client: when it was made and until when it works."""

    version: int
    created_at: str
    expires_at: Annotated[str | None, Field(description="end of its grace period, if any")]
    revoked_at: str | None
    active: bool


class ImportedCredential(Answer):
    kind: Annotated[str, Field(description="api_key, basic or client")]
    status: Annotated[str, Field(description="created or unchanged")]
    id: str | None = None
    label: str | None = None
    key_prefix: str | None = None
    username: str | None = None
    client_id: str | None = None
    secret: Annotated[
        str | None,
        Field(
            description="a generated key, password or client secret: shown here once, never again"
        ),
    ] = None


class ImportFieldError(Answer):
    field: str
    message: str


class ImportedRow(Answer):
    row: Annotated[int, Field(description="CSV: row as a spreadsheet numbers it; JSON: from 1")]
    name: str | None
    status: Annotated[str, Field(description="created, updated, unchanged or failed")]
    errors: list[ImportFieldError]
    credentials: list[ImportedCredential]


class ImportCounts(Answer):
    created: int
    updated: int
    unchanged: int
    failed: int


class ImportResult(Answer):
    dry_run: bool
    counts: ImportCounts
    rows: list[ImportedRow]
