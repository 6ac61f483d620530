"""Mock response: answer with a configured status, headers and body without calling the
backend (request list), or replace the response (response list) or the error answer (error
list)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from portway.policies._headers import check_header_name, check_header_value
from portway.policies.base import ALL_PHASES, Build, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply


class MockResponseConfig(PolicyConfig):
    status: Annotated[int, Field(ge=100, le=599, description="status code")] = 200
    headers: Annotated[dict[str, str], Field(max_length=100, description="response headers")] = (
        Field(default_factory=dict)
    )
    body: Annotated[str | None, Field(max_length=1 << 20, description="body text")] = None
    json_body: Annotated[Any, Field(description="body as JSON (instead of body)")] = None
    content_type: Annotated[
        str | None,
        Field(max_length=200, description="Content-Type (default: JSON or plain text)"),
    ] = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            check_header_name(name)
            check_header_value(text)
        return value

    @model_validator(mode="after")
    def _rules(self) -> MockResponseConfig:
        if self.body is not None and self.json_body is not None:
            raise ValueError("set either body or json_body, not both")
        return self


class MockResponsePolicy(Policy[MockResponseConfig]):
    type_name = "mock_response"
    summary = "Answer with a fixed status, headers and body (no backend call)."
    config_model = MockResponseConfig
    phases = ALL_PHASES
    errors = {}
    __slots__ = ("_reply_body", "_type")

    def __init__(self, config: MockResponseConfig, build: Build) -> None:
        super().__init__(config, build)
        declared = next((v for k, v in config.headers.items() if k.lower() == "content-type"), None)
        chosen = config.content_type or declared  # the worker sends Reply.content_type
        if config.json_body is not None:
            self._reply_body = json.dumps(config.json_body).encode()
            self._type = chosen or "application/json"
        else:
            self._reply_body = (config.body or "").encode()
            self._type = chosen or "text/plain; charset=utf-8"

    def _reply(self) -> Reply:
        headers = [(k, v) for k, v in self.config.headers.items() if k.lower() != "content-type"]
        return Reply(self.config.status, self._reply_body, headers, self._type)

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        return self._reply()

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        return self._reply()

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return self._reply()
