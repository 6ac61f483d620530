"""Shared pieces of the management API's contract: the answer base and the error answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """Base of every response model: unknown fields are refused (a drift fails the tests)."""

    model_config = ConfigDict(extra="forbid")


class Versioned(BaseModel):
    """Mixin of a stored resource's answer: ``version`` is also its ETag."""

    version: Annotated[int, Field(ge=1, description="the stored version; also the ETag")]


class ProblemDetail(BaseModel):
    field: str | None = None
    message: str


class Problem(BaseModel):
    """Every error answer of the management API."""

    error: Annotated[str, Field(description="a stable code, e.g. validation_error, conflict")]
    message: str
    correlation_id: str
    details: list[ProblemDetail] | None = None


Number = int | float
"""A JSON number shown as produced: ``float`` alone would render an integer 3 as 3.0."""
