"""A worker reads a revision API by API with the parts left at their defaults shared: the same
revision as a whole parse, less memory, and an error that names the API at fault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.config.revision import EnvironmentRevision


def revision(*apis: dict[str, Any]) -> dict[str, Any]:
    return {
        "environment": "prod",
        "revision": 3,
        "created_at": "2026-12-02T10:00:00Z",
        "apis": [{"api": api, "api_revision": 1} for api in apis],
    }


def api(name: str, **extra: Any) -> dict[str, Any]:
    backends = [{"url": "http://10.0.0.1"}]
    return {"name": name, "base_path": f"/{name}", "backends": backends, **extra}


def test_reading_for_serving_gives_the_revision_a_whole_parse_gives() -> None:
    raw = json.dumps(
        revision(api("a"), api("b", connection={"pool_size": 7}), api("c", maintenance=True))
    )
    whole = EnvironmentRevision.model_validate_json(raw)
    served = EnvironmentRevision.read_for_serving(raw.encode())
    assert served == whole
    assert served.model_dump_json() == whole.model_dump_json()


def test_parts_at_their_defaults_are_one_object_and_set_parts_are_not() -> None:
    raw = json.dumps(revision(api("a"), api("b"), api("c", connection={"pool_size": 7})))
    a, b, c = (d.api for d in EnvironmentRevision.read_for_serving(raw).apis)
    assert a.connection is b.connection
    assert a.health_check is b.health_check
    assert a.capture is b.capture
    assert c.connection is not a.connection
    assert c.connection.pool_size == 7
    assert a.connection.pool_size != 7


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (revision(api("a"), {"name": "b"}), "apis[1]"),
        (revision(api("a"), api("b", connection={"pool_size": "7"})), "apis[1]"),
        ({**revision(), "apis": {"a": 1}}, "apis: a list is required"),
    ],
)
def test_an_invalid_api_is_named(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        EnvironmentRevision.read_for_serving(json.dumps(doc))


def test_a_revision_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        EnvironmentRevision.read_for_serving("[1, 2]")
