"""script, api_call, message_builder, log and cache_invalidation configured through the
management API, deployed, and run by a real worker in front of the echo backend (which answers
with what it received, as JSON)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Platform
from tests.e2e.test_mediation_e2e import deploy, refused


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
