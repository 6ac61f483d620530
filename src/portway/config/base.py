"""The base model: strict, unknown fields refused, so every error names the field at fault."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Slug = Annotated[
    str,
    Field(pattern=SLUG_PATTERN, description="lower-case letters, digits, '-' and '_' (max 63)"),
]
_SLUG_RE = re.compile(SLUG_PATTERN)


def is_slug(value: str) -> bool:
    return _SLUG_RE.fullmatch(value) is not None


class Model(BaseModel):
    """Base of every configuration model: unknown fields are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, str_strip_whitespace=False)
