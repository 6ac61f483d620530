"""JSON Schema validation of the request body (request list) or the response body (response
list), or of the part a JSONPath selects; the 400 answer names the failing path."""

from __future__ import annotations

from typing import Annotated, Any

import jsonschema
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from pydantic import Field, field_validator, model_validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from portway.policies._body_policies import BodyCheckPolicy
from portway.policies.base import Build, Deny, ErrorSpec, PolicyConfig
from portway.policies.jsonpath import compile_jsonpath, format_path, load_json

_NO_REMOTE: Registry[Any] = Registry()  # $ref never fetches anything


class JsonSchemaConfig(PolicyConfig):
    json_schema: Annotated[
        dict[str, Any],
        Field(
            alias="schema",
            description="the JSON Schema (draft-07 or later; $schema picks the draft, "
            "2020-12 by default)",
        ),
    ]
    jsonpath: Annotated[
        str, Field(max_length=500, description="part of the body to validate ($ = all)")
    ] = "$"
    require_json_content_type: Annotated[
        bool, Field(description="refuse bodies whose Content-Type is not JSON")
    ] = False

    model_config = {"populate_by_name": True}

    @field_validator("jsonpath")
    @classmethod
    def _path(cls, value: str) -> str:
        compile_jsonpath(value)
        return value

    @model_validator(mode="after")
    def _schema(self) -> JsonSchemaConfig:
        cls = jsonschema.validators.validator_for(
            self.json_schema, default=jsonschema.Draft202012Validator
        )
        try:
            cls.check_schema(self.json_schema)
        except SchemaError as exc:
            where = format_path(list(exc.path))
            raise ValueError(
                f"schema is not a valid JSON Schema at {where}: {exc.message}"
            ) from None
        return self


class JsonSchemaPolicy(BodyCheckPolicy[JsonSchemaConfig]):
    type_name = "json_schema"
    summary = "Validate the JSON body (or a JSONPath part of it) against a JSON Schema."
    config_model = JsonSchemaConfig
    errors = {
        "invalid_json": ErrorSpec(400, "the body is not valid JSON"),
        "schema_violation": ErrorSpec(400, "the body does not match the schema"),
        "invalid_response": ErrorSpec(502, "the backend response does not match the schema"),
    }
    __slots__ = ("_path", "_validator")

    def __init__(self, config: JsonSchemaConfig, build: Build) -> None:
        super().__init__(config, build)
        cls = jsonschema.validators.validator_for(
            config.json_schema, default=jsonschema.Draft202012Validator
        )
        self._validator: Validator = cls(
            config.json_schema, registry=_NO_REMOTE, format_checker=cls.FORMAT_CHECKER
        )
        self._path = compile_jsonpath(config.jsonpath)

    def check(self, body: bytes, content_type: str | None, response: bool) -> None:
        failure = "invalid_response" if response else "invalid_json"
        if self.config.require_json_content_type and "json" not in (content_type or "").lower():
            raise Deny(failure, message="the body must be JSON (Content-Type)")
        try:
            document = load_json(body)
        except ValueError:
            raise Deny(failure) from None
        targets = self._path.find_paths(document)
        code = "invalid_response" if response else "schema_violation"
        if not targets:
            raise Deny(
                code, details={"path": self.config.jsonpath, "reason": "the path matches nothing"}
            )
        for location, target in targets:
            try:
                error = best_match(self._validator.iter_errors(target))
            except Unresolvable as exc:
                raise RuntimeError(f"schema reference cannot be resolved: {exc}") from None
            if error is not None:
                path = format_path([*location, *error.absolute_path])
                raise Deny(code, details={"path": path, "reason": error.message[:500]})
