"""The base model: strict, unknown fields refused, so every error names the field at fault."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Slug = Annotated[
    str,
    Field(pattern=SLUG_PATTERN, description="lower-case letters, digits, '-' and '_' (max 63)"),
]
_SLUG_RE = re.compile(SLUG_PATTERN)


def is_slug(value: str) -> bool:
    return _SLUG_RE.fullmatch(value) is not None


def _datetime_text(value: object) -> object:
    if isinstance(value, str | datetime):
        return value
    raise ValueError("a date-time string (ISO 8601, e.g. 2026-12-01T10:00:00Z) is required")


# JSON has no date-time type: the string form is the value, a number is refused (not an epoch).
JsonDatetime = Annotated[datetime, BeforeValidator(_datetime_text), Strict(False)]


class Model(BaseModel):
    """Base of every configuration model: unknown fields are errors, values are validated.

    Strict: no value changes type on the way in (``true`` is not an int, ``"100"`` is not a
    number, ``"yes"`` is not a bool). Enums and date-times, which JSON can only spell as strings,
    declare ``Strict(False)`` (see ``JsonDatetime``) so their string form is accepted from a parsed
    JSON body and from stored documents alike.
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, str_strip_whitespace=False, strict=True
    )


class FrozenModel(Model):
    """A ``Model`` that cannot change once validated (policy configs, the platform's matrix
    settings and inventory): hashable, safe to share between compiled pipelines."""

    model_config = ConfigDict(frozen=True)
