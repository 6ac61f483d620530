"""Message size limits: in the request list the request body is checked (413 above the maximum,
400 below the minimum), in the response list the response body (502). The declared
Content-Length is checked before any byte is read."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from portway.policies.base import Deny, ErrorSpec, Phase, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply

MAX_LIMIT = 1 << 30


def _declared(headers: HeaderMap) -> int | None:
    values = headers.get_all("content-length")
    if not values:
        return None
    text = values[0].strip()
    if len(values) > 1 or not text.isdigit():
        return -1  # ambiguous or malformed: refuse rather than guess
    return int(text)


class SizeLimitConfig(PolicyConfig):
    min_request_bytes: Annotated[
        int | None,
        Field(ge=1, le=MAX_LIMIT, description="smallest request body (request list); 400 below"),
    ] = None
    max_request_bytes: Annotated[
        int | None, Field(ge=0, le=MAX_LIMIT, description="largest request body (request list)")
    ] = None
    max_response_bytes: Annotated[
        int | None, Field(ge=0, le=MAX_LIMIT, description="largest response body (response list)")
    ] = None

    @model_validator(mode="after")
    def _rules(self) -> SizeLimitConfig:
        if (
            self.max_request_bytes is None
            and self.max_response_bytes is None
            and self.min_request_bytes is None
        ):
            raise ValueError("set min_request_bytes, max_request_bytes or max_response_bytes")
        if (
            self.min_request_bytes is not None
            and self.max_request_bytes is not None
            and self.min_request_bytes > self.max_request_bytes
        ):
            raise ValueError("min_request_bytes must not exceed max_request_bytes")
        return self


class SizeLimitPolicy(Policy[SizeLimitConfig]):
    type_name = "size_limit"
    summary = "Refuse request or response bodies larger than a limit."
    config_model = SizeLimitConfig
    phases = frozenset({Phase.REQUEST, Phase.RESPONSE})
    errors = {
        "request_too_large": ErrorSpec(413, "the request body is too large"),
        "request_too_small": ErrorSpec(400, "the request body is too small"),
        "invalid_content_length": ErrorSpec(400, "the Content-Length header is malformed"),
        "response_too_large": ErrorSpec(502, "the backend response is too large"),
    }

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        limit = self.config.max_request_bytes
        least = self.config.min_request_bytes
        if limit is None and least is None:
            return None
        declared = _declared(ctx.request.headers)
        if declared == -1:
            raise Deny("invalid_content_length")
        if limit is not None and declared is not None and declared > limit:
            raise Deny("request_too_large")
        body_known = declared is None or ctx.request.body_override is not None
        size = len(await ctx.request.body()) if body_known else declared
        if limit is not None and size is not None and size > limit:
            raise Deny("request_too_large")
        if least is not None and (size or 0) < least:
            raise Deny(
                "request_too_small",
                message=f"the request body is {size or 0} bytes, below the "
                f"{least} bytes of min_request_bytes (policy {self.name!r})",
            )
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        limit = self.config.max_response_bytes
        if limit is None or ctx.response is None:
            return None
        declared = _declared(ctx.response.headers)
        if declared is not None and declared > limit:
            raise Deny("response_too_large")
        read = declared is None or declared == -1 or ctx.response.body_override is not None
        if read and len(await ctx.response.body()) > limit:
            raise Deny("response_too_large")
        return None
