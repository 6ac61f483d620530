"""Declarative JSON transformation with JMESPath (the ``jmespath`` library): the request body
(request list) or the response body (response and error lists) is replaced by the result of an
expression evaluated on it. JMESPath has no loops, no assignment, no I/O: it can only read the
document it is given."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions
from jmespath.parser import ParsedResult
from pydantic import Field, field_validator

from portway.policies._body_policies import BodyRewritePolicy
from portway.policies._headers import SafeHeaderValue
from portway.policies.base import Build, Deny, ErrorSpec, PolicyConfig
from portway.policies.contract import HeaderMap
from portway.policies.jsonpath import load_json

MAX_EXPRESSION_LENGTH = 4000
MAX_NESTING = 100
"""Evaluation recurses once per level of the parsed expression: deeper is refused at save."""
_FUNCTIONS = frozenset(Functions.FUNCTION_TABLE)


def _nodes(node: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every node of a parsed expression with its depth, without recursion."""
    stack = [(1, node)]
    while stack:
        depth, current = stack.pop()
        if isinstance(current, dict):
            yield depth, current
            stack.extend((depth + 1, child) for child in current.get("children", []))


def compile_jmespath(expression: str) -> ParsedResult:
    """Compile once; ``ValueError`` naming the problem, including an unknown function (which
    ``jmespath`` itself only notices when the expression runs) and nesting deeper than
    ``MAX_NESTING`` (which would exhaust the stack when evaluated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PendingDeprecationWarning)
        try:
            parsed = jmespath.compile(expression)
        except RecursionError:
            raise ValueError(f"expression is nested deeper than {MAX_NESTING} levels") from None
        except JMESPathError as exc:
            raise ValueError(" ".join(str(exc).split())) from None
        except PendingDeprecationWarning:
            raise ValueError(
                "a `literal` must be JSON (write strings as 'text' or `\"text\"`)"
            ) from None
    for depth, node in _nodes(parsed.parsed):
        if depth > MAX_NESTING:
            raise ValueError(f"expression is nested deeper than {MAX_NESTING} levels")
        if node.get("type") == "function_expression" and node.get("value") not in _FUNCTIONS:
            raise ValueError(f"unknown JMESPath function {node.get('value')!r}")
    return parsed


class JsonTransformConfig(PolicyConfig):
    expression: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_EXPRESSION_LENGTH,
            description="JMESPath expression; its result becomes the body",
        ),
    ]
    content_type: Annotated[
        SafeHeaderValue, Field(max_length=200, description="Content-Type of the result")
    ] = "application/json"

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_jmespath(value)
        return value


class JsonTransformPolicy(BodyRewritePolicy[JsonTransformConfig]):
    type_name = "json_transform"
    summary = "Replace the JSON body by the result of a JMESPath expression evaluated on it."
    config_model = JsonTransformConfig
    errors = {
        "invalid_json": ErrorSpec(400, "the body is not valid JSON"),
        "transform_failed": ErrorSpec(400, "the body cannot be transformed"),
        "invalid_response": ErrorSpec(502, "the backend response cannot be transformed"),
    }
    __slots__ = ("_expression",)

    def __init__(self, config: JsonTransformConfig, build: Build) -> None:
        super().__init__(config, build)
        self._expression = compile_jmespath(config.expression)

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes:
        try:
            document = load_json(body)
        except ValueError:
            raise Deny("invalid_response" if response else "invalid_json") from None
        try:
            result = self._expression.search(document)
        except JMESPathError as exc:
            reason = " ".join(str(exc).split())[:500]
            code = "invalid_response" if response else "transform_failed"
            raise Deny(code, details={"reason": reason}) from None
        headers.set("Content-Type", self.config.content_type)
        return json.dumps(result, ensure_ascii=False).encode()
