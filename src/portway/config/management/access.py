"""Sign-in, the caller, users and personal access tokens."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from portway.config.management.common import Answer


class LoginAnswer(Answer):
    username: str
    role: str
    csrf_token: Annotated[str, Field(description="echo it in X-CSRF-Token on unsafe requests")]
    expires_at: str


class Me(Answer):
    username: str
    role: str


class UserView(Answer):
    username: str
    role: str
    disabled: bool
    created_at: str | None
    version: int


class CreatedUser(UserView):
    password: Annotated[
        str | None, Field(description="the generated password, shown once (absent if given)")
    ] = None


class TokenView(Answer):
    id: str
    name: str | None
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    active: bool


class CreatedToken(TokenView):
    token: Annotated[str, Field(description="the token value, shown once")]
