"""message_builder: bodies built from sandboxed Jinja2 templates, escaped for their content type,
and hostile templates refused when saved or bounded when rendered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.policies.contract import PolicyContext
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected

ORDER = b'{"order": {"id": 7, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}]}}'


async def build(world: World, config: dict[str, Any], ctx: PolicyContext) -> tuple[int, bytes]:
    """The status of the answer (0: went on) and the request body the backend would get."""
    reply = await world.one("message_builder", config).on_request(ctx)
    if reply is not None:
        return reply.status, reply.body
    return 0, await ctx.request.body()


async def test_json_body_from_the_request(world: World) -> None:
    template = (
        '{"id": {{ json.order.id }}, "user": "{{ request.headers["x-user"] }}", "skus": ['
        '{% for i in json.order["items"] if i.qty > 0 %}"{{ i.sku }}"'
        '{{ "," if not loop.last }}{% endfor %}], "tier": {{ tier }}, '
        '"none": {{ json.nope.x | default(none) }}}'
    )
    config = {"template": template, "inputs": {"tier": "query.tier"}}
    ctx = make_ctx("POST", body=ORDER, headers=[("X-User", 'eve", "admin": true, "x": "')])
    status, body = await build(world, config, ctx)
    assert status == 0
    built = json.loads(body)  # the quotes in the header could not break out of the string
    assert built == {
        "id": 7,
        "user": 'eve", "admin": true, "x": "',
        "skus": ["a"],
        "tier": None,
        "none": None,
    }
    assert ctx.request.headers.get("content-type") == "application/json"


async def test_tojson_is_json_and_html_escaping_is_not_offered(world: World) -> None:
    config = {"template": '{"data": {{ json | tojson }}, "n": "{{ json.order.id }}"}'}
    status, body = await build(world, config, make_ctx("POST", body=ORDER))
    assert status == 0
    assert json.loads(body) == {"data": json.loads(ORDER), "n": "7"}
    _, message = rejected("message_builder", {"template": '"{{ x|e }}"'})
    assert "filter 'e' is not available" in message


async def test_xml_is_autoescaped(world: World) -> None:
    config = {
        "template": "<order id='{{ json.order.id }}'><note>{{ query }}</note></order>",
        "content_type": "application/xml",
        "inputs": {"query": "query.note"},
    }
    ctx = make_ctx("POST", body=ORDER, query=[("note", "</note><admin/>&")])
    status, body = await build(world, config, ctx)
    assert status == 0
    assert body == b"<order id='7'><note>&lt;/note&gt;&lt;admin/&gt;&amp;</note></order>"


async def test_response_and_error_lists(world: World) -> None:
    config = {
        "template": "status={{ response.status }} body={{ body }}",
        "content_type": "text/plain",
    }
    pipeline = world.one("message_builder", config, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(201, b"made")
    assert await pipeline.on_response(ctx) is None
    assert ctx.response is not None
    assert await ctx.response.body() == b"status=201 body=made"
    assert ctx.response.headers.get("content-type") == "text/plain"


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        ('{{ "a" * 1000000000 }}', {}),
        ("{{ 9 ** 99 }}", {}),
        ("{{ 2 ** 64 * 2 ** 8190 }}", {}),
        ("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", {}),
        ("{{ range(100000000) | length }}", {}),
        ("{{ v" + " ~ v" * 20 + " }}", {"v": "body.$.v"}),
        ("{{ v" + " + v" * 20 + " }}", {"v": "body.$.v"}),
        ("{{ (v,) * 1000000 }}", {"v": "body.$.v"}),
        ("{{ ((v,),) * 1000000 }}", {"v": "body.$.v"}),
        ("{{ [v" + ", v" * 20 + "] | join }}", {"v": "body.$.v"}),
        ("{{ v.append(1) }}", {"v": "body.$.items"}),
        ("{{ v.__class__.__mro__[1].__subclasses__() }}", {"v": "body.$.v"}),
        ("{{ cycler.__init__.__globals__ }}", {}),
        ("{{ lipsum() }}", {}),
        ("{{ namespace(a=1) }}", {}),
    ],
)
async def test_hostile_templates_are_bounded_at_render(
    world: World, template: str, variables: dict[str, str]
) -> None:
    config = {"template": template, "inputs": variables, "content_type": "text/plain"}
    body = json.dumps({"v": "a" * 60000, "items": [1]}).encode()
    status, answer = await build(world, config, make_ctx("POST", body=body))
    if status == 0:  # rendered harmlessly: an undefined name renders as nothing
        assert len(answer) < 100
        assert b"class" not in answer
    else:
        assert (status, json.loads(answer)["error"]) == (500, "build_failed")
        assert b"a" * 100 not in answer  # no input echoed into the error


async def test_output_cap(world: World) -> None:
    config = {
        "template": "{% for i in range(5000) %}xxxxxxxxxx{% endfor %}",
        "max_output_bytes": 1000,
    }
    status, answer = await build(world, config, make_ctx("POST"))
    assert (status, json.loads(answer)["error"]) == (500, "build_failed")


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"template": "{{ x|safe }}"}, "p.config", "filter 'safe' is not available"),
        ({"template": "{{ x|center(10**9) }}"}, "p.config", "filter 'center'"),
        ({"template": "{{ x|format(1) }}"}, "p.config", "filter 'format'"),
        ({"template": "{% set a = 1 %}"}, "p.config", "set, with, macro"),
        ({"template": "{% macro f() %}{{ f() }}{% endmacro %}"}, "p.config", "set, with, macro"),
        ({"template": "{% include 'x' %}"}, "p.config", "include"),
        ({"template": "{% extends 'x' %}"}, "p.config", "extends"),
        ({"template": "{% for a in b %}"}, "p.config", "template syntax error on line 1"),
        (
            {"template": "{% for a in x %}" * 4 + "{% endfor %}" * 4},
            "p.config",
            "nested at most 3 deep",
        ),
        ({"template": "{{ portway_loop([1]) }}"}, "p.config", "reserved"),
        ({"template": "{{ x }}" * 3000}, "p.config", "at most 2000 parts"),
        ({"template": "x", "inputs": {"body": "header.X"}}, "p.config", "built in"),
        ({"template": "x", "content_type": "a\r\nb"}, "p.config.content_type", "control"),
        ({"template": ""}, "p.config.template", "at least 1"),
    ],
)
def test_bad_templates_are_refused(config: dict[str, Any], field: str, message: str) -> None:
    where, text = rejected("message_builder", config)
    assert where == field
    assert message in text
