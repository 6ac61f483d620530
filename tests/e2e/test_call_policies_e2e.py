"""script, api_call, message_builder, log and cache_invalidation configured through the
management API, deployed, and run by a real worker in front of the echo backend (which answers
with what it received, as JSON)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.e2e.test_mediation_e2e import deploy, refused
from tests.stores.conftest import hazelcast_url, redis_url
from tests.support.processes import wait_until
from tests.support.servers import Server


def test_script(platform: Platform) -> None:
    script = {
        "name": "order-rules",
        "type": "script",
        "config": {
            "inputs": {"qty": "body.$.qty", "tier": "header.X-Tier"},
            "deny_when": "qty > 100 && tier != 'gold'",
            "deny_status": 422,
            "deny_message": "large orders need the gold tier",
            "set_headers": {"X-Plan": "tier == 'gold' ? 'premium' : 'basic'"},
        },
    }
    url = deploy(platform, {"request": [script]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        small = client.post(url, json={"qty": 5}, headers={"X-Tier": "silver"})
        assert small.status_code == 200
        assert small.json()["headers"]["x-plan"] == "basic"
        large = client.post(url, json={"qty": 500}, headers={"X-Tier": "silver"})
        assert large.status_code == 422
        answer = large.json()
        assert (answer["error"], answer["message"]) == (
            "script_denied",
            "large orders need the gold tier",
        )
        assert answer["correlation_id"] == large.headers["X-Correlation-ID"]
        gold = client.post(url, json={"qty": 500}, headers={"X-Tier": "gold"})
        assert gold.status_code == 200
        assert gold.json()["headers"]["x-plan"] == "premium"
    escape = {"name": "s", "type": "script", "config": {"deny_when": "request.__class__ == 1"}}
    assert "names starting with '_'" in refused(platform, escape)
    reduce = {
        "name": "s",
        "type": "script",
        "config": {"deny_when": "[1,2].reduce(r, i, 'x', r + r) == ''"},
    }
    message = refused(platform, reduce)
    assert "policies.request[0].config" in message
    assert "'reduce' is not allowed" in message


def test_api_call(platform: Platform) -> None:
    # the echo backend plays the other service too: it answers with the request it got
    call = {
        "name": "profile",
        "type": "api_call",
        "config": {
            "url": platform.backend_url + "/profiles/${header.X-User}?from=${api}",
            "headers": {"X-Caller": "gateway"},
            "cache_seconds": 60,
            "outputs": [
                {"source": "json", "path": "$.path", "header": "X-Profile-Path"},
                {"source": "json", "path": "$.headers['x-caller']", "header": "X-Profile-Caller"},
            ],
        },
    }
    down = {
        "name": "down",
        "type": "api_call",
        "condition": {"variable": "header.X-Down", "operator": "IS_EXISTS"},
        "config": {"url": "http://127.0.0.1:9/never", "timeout_seconds": 2, "deny_status": 503},
    }
    url = deploy(platform, {"request": [call, down]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        sent = client.get(url, headers={"X-User": "ann/../admin"})
        assert sent.status_code == 200
        headers = sent.json()["headers"]
        # sent as one %2F-encoded segment; the echo shows the path decoded
        assert headers["x-profile-path"] == "/profiles/ann/../admin"
        assert headers["x-profile-caller"] == "gateway"
        failed = client.get(url, headers={"X-User": "ann", "X-Down": "1"})
        assert failed.status_code == 503
        assert failed.json()["error"] == "api_call_failed"
    metadata = {
        "name": "steal",
        "type": "api_call",
        "config": {"url": "http://169.254.169.254/latest/meta-data/"},
    }
    message = refused(platform, metadata)
    assert "policies.request[0].config.url" in message
    assert "backend_allow_cidrs" in message
    with platform.api() as client:
        shared = client.post("/global-policies", json=metadata)
    assert shared.status_code == 422
    assert shared.json()["details"][0]["field"] == "body.config.url"
    templated_host = {"name": "x", "type": "api_call", "config": {"url": "http://${query.h}/x"}}
    assert "only be used in the path" in refused(platform, templated_host)


def test_message_builder(platform: Platform) -> None:
    to_xml = {
        "name": "to-legacy",
        "type": "message_builder",
        "config": {
            "content_type": "application/xml",
            "inputs": {"user": "header.X-User"},
            "template": '<order id="{{ json.id }}" user="{{ user }}">'
            '{% for i in json["items"] %}<line sku="{{ i.sku }}"/>{% endfor %}</order>',
        },
    }
    envelope = {
        "name": "envelope",
        "type": "message_builder",
        "config": {
            "template": '{"echoed": {{ json.body | tojson }}, "status": {{ response.status }}, '
            '"id": "{{ context.correlation_id }}"}'
        },
    }
    url = deploy(platform, {"request": [to_xml], "response": [envelope]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        order = {"id": 7, "items": [{"sku": "a<b"}, {"sku": "c"}]}
        sent = client.post(url, json=order, headers={"X-User": '"><admin/>'})
        assert sent.status_code == 200
        assert sent.headers["content-type"] == "application/json"
        answer = sent.json()
        assert answer["echoed"] == (
            '<order id="7" user="&#34;&gt;&lt;admin/&gt;">'
            '<line sku="a&lt;b"/><line sku="c"/></order>'
        )
        assert (answer["status"], answer["id"]) == (200, sent.headers["X-Correlation-ID"])
    hostile = {
        "name": "m",
        "type": "message_builder",
        "config": {"template": "{% set x = 1 %}{{ x }}"},
    }
    assert "set, with, macro" in refused(platform, hostile)


def test_log(platform: Platform) -> None:
    log = {
        "name": "note",
        "type": "log",
        "config": {"variables": {"tier": "${header.X-Tier}", "key": "${header.X-Api-Key}"}},
    }
    url = deploy(platform, {"request": [log]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        sent = client.get(url, headers={"X-Tier": "gold", "X-Api-Key": "k-0123456789"})
        assert sent.status_code == 200
    cid = sent.headers["X-Correlation-ID"]

    def logged() -> dict[str, str] | None:
        items = platform.call("GET", f"/requests?correlation_id={cid}", expect=200)["items"]
        return items[0].get("variables") if items else None

    wait_until(lambda: logged() is not None, "the record reaches the traffic log", timeout=60)
    assert logged() == {"tier": "gold", "key": "****"}  # X-Api-Key: a credential, always masked


@pytest.mark.servers
@pytest.mark.parametrize("engine", ["redis", "hazelcast"])
def test_cache_invalidation_across_workers(
    platform: Platform, engine: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(engine)
    url = redis_url(server) if engine == "redis" else hazelcast_url(server)
    _, port_a = platform.start_worker("wa", cache_url=url)
    _, port_b = platform.start_worker("wb", cache_url=url)
    cache = {"ttl_seconds": 3600, "storage": "distributed", "invalidation_key": "${path}"}
    api = {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": platform.backend_url}],
        "policies": {
            "request": [
                {"name": "cache", "type": "response_cache", "config": cache},
                {
                    "name": "on-write",
                    "type": "cache_invalidation",
                    "config": {"scope": "key", "key": "${path}"},
                },
            ]
        },
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    assert platform.deploy("orders")["results"][0]["success"]
    a, b = (f"http://127.0.0.1:{port}/orders" for port in (port_a, port_b))
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        wait_until(lambda: client.get(a + "/warm").status_code == 200, "worker A serves")
        wait_until(lambda: client.get(b + "/warm").status_code == 200, "worker B serves")

        def state(url: str) -> str:
            return client.get(url).headers["X-Cache"]

        assert state(a + "/1") == "MISS"
        assert state(b + "/1") == "HIT"  # stored by A in Redis
        assert state(a + "/2") == "MISS"
        assert client.put(b + "/1", json={"qty": 2}).status_code == 200  # a write through B
        assert state(a + "/1") == "MISS"  # A no longer serves the old answer
        assert state(b + "/2") == "HIT"  # another key is untouched
        assert state(b + "/1") == "HIT"  # cached again
