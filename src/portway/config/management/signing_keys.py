"""The environments' JWT signing keys: public halves and lifecycle only, never a private key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from portway.config.management.common import Answer, Versioned


class SigningKeyView(Answer, Versioned):
    kid: Annotated[str, Field(description="'kid' of the tokens it signs")]
    environment: str
    algorithm: Literal["RS256", "ES256"]
    state: Annotated[
        Literal["current", "previous", "retired"],
        Field(
            description="current: signs new tokens; previous: still published and accepted "
            "until retire_at; retired: neither"
        ),
    ]
    created_at: str
    retire_at: Annotated[
        str | None, Field(description="when a previous key stops being published and accepted")
    ] = None
    public_jwk: Annotated[dict[str, Any], Field(description="the public key as a JWK")]


class Jwks(Answer):
    """A JSON Web Key Set (RFC 7517): what the environment's workers publish."""

    keys: list[dict[str, Any]]
