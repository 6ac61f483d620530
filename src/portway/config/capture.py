"""What an API's traffic records capture beyond the standard fields (``ApiProxy.capture``).

Each of the four regions of an exchange opts in to its headers and its body; the client request
also to its query parameters. Masking rules name header names, query parameters, JSONPath fields
(JSON bodies) and ElementPath fields (XML bodies); credentials are masked whatever the rules say. An
environment may replace the whole setting (``environments: {prod: {...}}``). The worker applies
all of it before the record leaves it (``portway.worker.capture``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from portway.config.base import Model

MAX_RULES = 50
RuleName = Annotated[str, Field(min_length=1, max_length=200)]
RulePath = Annotated[str, Field(min_length=1, max_length=500)]


class RegionCapture(Model):
    headers: bool = False
    body: bool = False


class Capture(Model):
    request: Annotated[RegionCapture, Field(description="the request from the client")] = (
        RegionCapture()
    )
    query: Annotated[bool, Field(description="the client request's query parameters")] = False
    backend_request: Annotated[
        RegionCapture, Field(description="the request sent to the backend")
    ] = RegionCapture()
    backend_response: Annotated[
        RegionCapture, Field(description="the response from the backend")
    ] = RegionCapture()
    response: Annotated[RegionCapture, Field(description="the response to the client")] = (
        RegionCapture()
    )
    max_body_bytes: Annotated[
        int, Field(ge=0, le=1 << 20, description="bodies are cut at this size")
    ] = 4096
    mask_headers: list[RuleName] = Field(
        default_factory=list, max_length=MAX_RULES, description="header names masked"
    )
    mask_query: list[RuleName] = Field(
        default_factory=list, max_length=MAX_RULES, description="query parameters masked"
    )
    mask_json: list[RulePath] = Field(
        default_factory=list, max_length=MAX_RULES, description="JSONPath fields masked"
    )
    mask_xml: list[RulePath] = Field(
        default_factory=list, max_length=MAX_RULES, description="ElementPath fields masked"
    )

    @field_validator("mask_json")
    @classmethod
    def _json_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("$"):
                raise ValueError(f"{path!r} is not a JSONPath (it must start with '$')")
        return value

    @field_validator("mask_xml")
    @classmethod
    def _xpaths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(
                    f"{path!r} is not an absolute ElementPath (it must start with '/')"
                )
        return value

    @property
    def enabled(self) -> bool:
        regions = (self.request, self.backend_request, self.backend_response, self.response)
        return self.query or any(r.headers or r.body for r in regions)


class CaptureSettings(Capture):
    environments: Annotated[
        dict[str, Capture], Field(description="a whole setting per environment, replacing this")
    ] = Field(default_factory=dict)

    def for_environment(self, environment: str) -> Capture:
        return self.environments.get(environment, self)
