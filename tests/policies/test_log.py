"""log: chosen values rendered into the request's log entry (masked later, in the worker)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.helpers import World, make_ctx
from tests.policies.test_mediation import rejected


async def test_values_are_rendered_and_cut(world: World) -> None:
    config = {
        "variables": {"tier": "${header.X-Tier}", "qty": "n=${body.$.qty}", "nil": "${query.no}"},
        "max_value_chars": 16,
    }
    ctx = make_ctx("POST", headers=[("X-Tier", "g" * 40)], body=b'{"qty": 3}')
    assert await world.one("log", config).on_request(ctx) is None
    assert ctx.log["variables"] == {
        "tier": ("g" * 16, ("header.X-Tier",)),
        "qty": ("n=3", ("body.$.qty",)),
        "nil": ("", ("query.no",)),
    }


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"variables": {}}, "p.config.variables", "at least 1"),
        ({"variables": {"a.b": "x"}}, "p.config.variables", "must be a letter then"),
        ({"variables": {"a": "${nope}"}}, "p.config.variables", "unknown variable"),
        ({"variables": {"a": "x" * 2001}}, "p.config.variables", "at most 2000"),
        ({"variables": {f"v{i}": "x" for i in range(21)}}, "p.config.variables", "at most 20"),
        ({"variables": {"a": "x"}, "max_value_chars": 10**6}, "p.config.max_value_chars", "4096"),
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any], field: str, message: str) -> None:
    where, text = rejected("log", config)
    assert where == field
    assert message in text
