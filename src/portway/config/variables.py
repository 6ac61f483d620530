"""Per-environment variables: ``${env.NAME}`` in backend URLs and policy configs.

An API proxy is written once and deployed to several environments; what differs between them (a
backend's address, a key the backend expects) is a variable set per environment in the manager.
An API refers to one as ``${env.NAME}`` in a backend URL or in any string of a policy config;
``$${env.NAME}`` is the literal text ``${env.NAME}``. Expansion is one pass: a value that itself
reads ``${env.OTHER}`` stays as written (no recursion, so no loops and no surprises).

The manager expands the references when it builds an environment revision
(``portway.config.revision.expand_apis``) and checks the outcome as a worker would run it; the
revision keeps the API as written and the values it was built with (``RevisionVariable``), so
what users read shows ``${env.NAME}`` while a worker is handed the expanded APIs. A secret
variable is write-only: never answered, masked in audit records, revision answers, deploy
refusals (``scrubbed``) and traffic records, and refused in a backend URL (an address ends up in
traffic records and logs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated

from pydantic import Field

from portway.config.base import Model
from portway.errors import ConfigError, DeploymentError

NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"
MAX_VALUE = 8192
_TOKEN = re.compile(r"\$?\$\{env\.([^}]*)\}")
ENV_REFERENCE = _TOKEN
"""A reference (or its ``$$`` escape); group 1 is the name as written."""
_NAME = re.compile(NAME_PATTERN)
_OPEN = "${env."


class RevisionVariable(Model):
    """A variable's value as an environment revision was built with it."""

    value: Annotated[str, Field(max_length=MAX_VALUE)]
    secret: bool = False


class VariableBody(Model):
    """What a write of ``/environments/{environment}/variables/{name}`` carries."""

    value: Annotated[
        str,
        Field(
            max_length=MAX_VALUE,
            description="the value; of a secret variable write-only (answered as '***'; "
            "writing '***' keeps the stored value)",
        ),
    ]
    secret: Annotated[
        bool,
        Field(
            description="write-only: never answered, masked in audit records and revisions, "
            "not allowed in backend URLs"
        ),
    ] = False
    description: Annotated[str, Field(max_length=1000)] = ""


def references(text: str) -> list[str]:
    """The variable names ``text`` reads (escaped ``$${env.…}`` excluded); ``ValueError`` for a
    malformed reference."""
    names = []
    for found in _TOKEN.finditer(text):
        if found.group(0).startswith("$$"):
            continue
        name = found.group(1)
        if not _NAME.fullmatch(name):
            raise ValueError(f"${{env.{name}}} is not a variable reference (names: {NAME_PATTERN})")
        names.append(name)
    unclosed = text.replace("$" + _OPEN, "").count(_OPEN) - len(names)
    if unclosed > 0:
        raise ValueError("a '${env.' reference is not closed with '}'")
    return names


def has_references(text: str) -> bool:
    return _OPEN in text


def expand(text: str, values: Mapping[str, RevisionVariable], where: str) -> str:
    """``text`` with each ``${env.NAME}`` replaced by its value and each ``$${env.`` unescaped;
    ``ConfigError`` at ``where`` naming an undefined variable."""
    if _OPEN not in text:
        return text
    try:
        references(text)
    except ValueError as exc:
        raise ConfigError(str(exc), where) from None

    def one(found: re.Match[str]) -> str:
        if found.group(0).startswith("$$"):
            return found.group(0)[1:]
        variable = values.get(found.group(1))
        if variable is None:
            raise ConfigError(f"variable {found.group(1)} is not defined", where)
        return variable.value

    return _TOKEN.sub(one, text)


def scrub(text: str, variables: Mapping[str, RevisionVariable]) -> str:
    """``text`` with every secret variable's value as ``***`` (a policy's error message may quote
    the value it refused)."""
    for variable in variables.values():
        if variable.secret and variable.value:
            text = text.replace(variable.value, "***")
    return text


@contextmanager
def scrubbed(variables: Mapping[str, RevisionVariable]) -> Iterator[None]:
    """Errors raised inside carry no secret variable's value (``scrub``)."""
    try:
        yield
    except ConfigError as exc:
        message = scrub(exc.message, variables)
        if message == exc.message:
            raise
        raise ConfigError(message, exc.field) from None
    except DeploymentError as exc:
        message = scrub(str(exc), variables)
        if message == str(exc):
            raise
        raise DeploymentError(message) from None
