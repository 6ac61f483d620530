"""content_filter: RE2 patterns over body/path/query/headers, and size, depth, count limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.policies.helpers import World, make_ctx
from tests.policies.test_mediation import rejected

SQL = {"name": "sql", "pattern": r"(?i)\bunion\s+select\b"}
SCRIPT = {"name": "script", "pattern": "<script", "ignore_case": True}


async def verdict(world: World, config: dict[str, Any], **request: Any) -> tuple[int, Any] | None:
    reply = await world.one("content_filter", config).on_request(make_ctx(method="POST", **request))
    if reply is None:
        return None
    answer = json.loads(reply.body)
    assert answer["correlation_id"] == "corr-123"
    return reply.status, answer


async def test_patterns_refuse_the_body_naming_the_rule(world: World) -> None:
    config = {"patterns": [SQL, SCRIPT]}
    assert await verdict(world, config, body=b'{"q": "union of sets"}') is None
    status, answer = await verdict(world, config, body=b'{"q": "1 UNION  SELECT pw"}') or (0, {})
    assert (status, answer["error"], answer["rule"], answer["target"]) == (
        400,
        "pattern_matched",
        "sql",
        "body",
    )
    found = await verdict(world, config, body=b"<ScRiPt>alert(1)</script>")
    assert found is not None
    assert found[1]["rule"] == "script"


async def test_patterns_on_path_query_and_headers(world: World) -> None:
    config = {"patterns": [SQL], "targets": ["path", "query", "headers"]}
    assert await verdict(world, config, body=b"union select") is None  # body not a target
    query = await verdict(world, config, query=[("q", "x union select y")])
    headers = await verdict(world, config, headers=[("X-Q", "union select")])
    path = await verdict(world, config, path="/orders/union select")
    assert [v[1]["target"] if v else None for v in (query, headers, path)] == [
        "query",
        "headers",
        "path",
    ]


async def test_invalid_utf8_is_still_matched(world: World) -> None:
    config = {"patterns": [{"name": "x", "pattern": "evil"}]}
    assert await verdict(world, config, body=b"\xff\xfeevil\x00") is not None


async def test_pathological_input_is_linear(world: World) -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once
    config = {"patterns": [{"name": "redos", "pattern": "(a+)+$"}]}
    assert await verdict(world, config, body=b"a" * 50_000 + b"!") is None


async def test_body_size(world: World) -> None:
    assert await verdict(world, {"max_body_bytes": 4}, body=b"1234") is None
    found = await verdict(world, {"max_body_bytes": 4}, body=b"12345")
    assert found is not None
    assert (found[0], found[1]["error"], found[1]["rule"]) == (413, "too_large", "max_body_bytes")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": {"b": [1]}}', None),
        (b'{"a": {"b": [[1]]}}', (400, "max_json_depth")),
        (b"[" * 100_000, (400, "max_json_depth")),  # deeper than any parser accepts
        (b'{"a": "{{{{[[[[", "b": "::::"}', None),  # structure inside strings is text
        (b'{"a": "\\"{{{{", "b": 1}', None),  # escaped quotes do not end a string
        (b'{"a": 1, "b": 2, "c": 3, "d": 4}', (413, "max_json_keys")),
    ],
)
async def test_json_limits(world: World, body: bytes, expected: tuple[int, str] | None) -> None:
    found = await verdict(world, {"max_json_depth": 3, "max_json_keys": 3}, body=body)
    assert (None if found is None else (found[0], found[1]["rule"])) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<a><b><c/></b></a>", None),
        (b"<a><b><c><d/></c></b></a>", (400, "max_xml_depth")),
        (b"<a>" * 1000 + b"</a>" * 1000, (400, "max_xml_depth")),
        (b"<a><b/><b/><b/><b/></a>", (413, "max_xml_elements")),
        (b"<a><b>", None),  # not well-formed: not this policy's judgement
    ],
)
async def test_xml_limits(world: World, body: bytes, expected: tuple[int, str] | None) -> None:
    found = await verdict(world, {"max_xml_depth": 3, "max_xml_elements": 4}, body=body)
    assert (None if found is None else (found[0], found[1]["rule"])) == expected


async def test_a_compressed_body_cannot_slip_past(world: World) -> None:
    config = {"patterns": [SQL], "max_json_depth": 2}
    for encoding in ("gzip", "br", "identity, gzip"):
        found = await verdict(
            world, config, body=b"\x1f\x8b...", headers=[("Content-Encoding", encoding)]
        )
        assert found is not None
        assert (found[0], found[1]["error"]) == (415, "encoded_body")
    plain = [("Content-Encoding", "Identity")]
    assert await verdict(world, config, body=b"{}", headers=plain) is None
    assert await verdict(world, config, headers=[("Content-Encoding", "gzip")]) is None  # no body
    path_only = {"patterns": [SQL], "targets": ["path"], "max_body_bytes": 100}
    gzip = [("Content-Encoding", "gzip")]
    assert await verdict(world, path_only, body=b"\x1f\x8b", headers=gzip) is None


def test_config_rules() -> None:
    assert rejected("content_filter", {}) == ("p.config", "give patterns or at least one limit")
    field, message = rejected("content_filter", {"patterns": [{"name": "x", "pattern": "(a"}]})
    assert (field, message) == (
        "p.config.patterns[0].pattern",
        "not a usable RE2 regular expression: missing ): (a",
    )
    lookahead = {"patterns": [{"name": "x", "pattern": "(?=a)"}]}
    assert rejected("content_filter", lookahead)[0] == "p.config.patterns[0].pattern"
    huge = {"patterns": [{"name": "x", "pattern": "(?:[a-z]{1000}){10}"}]}
    assert rejected("content_filter", huge)[0] == "p.config.patterns[0].pattern"
    bad_name = {"patterns": [{"name": "a b", "pattern": "x"}]}
    assert rejected("content_filter", bad_name)[0] == "p.config.patterns[0].name"
    assert rejected("content_filter", {"max_xml_depth": 1000})[0] == "p.config.max_xml_depth"
    targets = {"patterns": [SQL], "targets": ["cookies"]}
    assert rejected("content_filter", targets)[0] == "p.config.targets[0]"
