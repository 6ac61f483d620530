"""The log policy's values in the traffic record: written by a real worker to the SQLite traffic
log and read back, masked by the API's capture rules (credentials whatever the rules say)."""

from __future__ import annotations

from pathlib import Path

from tests.worker.support import api, backends, revision
from tests.worker.traffic_support import logged_gateway, send

TOKEN = "tok-secret-4242"
LOG = {
    "name": "note",
    "type": "log",
    "config": {
        "max_value_chars": 20,
        "variables": {
            "tier": "${header.X-Tier}",
            "who": "user=${query.user} via ${method}",
            "auth": "${header.Authorization}",  # a credential: always masked
            "session": "s=${query.session}",  # masked by the API's mask_query
            "card": "${body.$.card.number}",  # masked by the API's mask_json
            "echo": "saw ${header.X-Echo}",  # carries the token: masked inside the text
            "long": "${body.$.note}",
            "status": "${response.status}",
        },
    },
}


async def test_logged_values_are_written_masked_and_cut(tmp_path: Path) -> None:
    async with backends("echo") as (echo,):
        rev = revision(
            api(
                "orders",
                "/orders",
                [echo.url],
                policies={"request": [LOG], "response": [{**LOG, "name": "after"}]},
                capture={"mask_query": ["session"], "mask_json": ["$.card.number"]},
            )
        )
        async with logged_gateway(tmp_path, rev, echo) as setup:
            answer = await send(
                setup,
                "POST",
                "/orders/1?user=ann&session=s3ss10n",
                "cid-logged",
                json={"card": {"number": "4111111111111111"}, "note": "x" * 100},
                headers={
                    "X-Tier": "gold",
                    "Authorization": f"Bearer {TOKEN}",
                    "X-Echo": TOKEN,
                },
            )
            assert answer.status_code == 200
            record = await setup.record("cid-logged")
    assert record["variables"] == {
        "tier": "gold",
        "who": "user=ann via POST",
        "auth": "****",
        "session": "****",
        "card": "****",
        "echo": "saw ****",
        "long": "x" * 20,
        "status": "200",  # the response-list entry ran last and sees the status
    }
    assert TOKEN not in str(record)
    assert "s3ss10n" not in str(record)
    assert "4111111111111111" not in str(record)


async def test_a_secret_variables_value_is_masked_in_logged_values(tmp_path: Path) -> None:
    secret = "vault-value-9191"
    log = {
        "name": "note",
        "type": "log",
        "config": {"variables": {"sent": "got ${body.$.note}", "tier": "${header.X-Tier}"}},
    }
    async with backends("echo") as (echo,):
        rev = revision(api("orders", "/orders", [echo.url], policies={"request": [log]}))
        rev = rev.model_copy(update={"secret_values": [secret]})
        async with logged_gateway(tmp_path, rev, echo) as setup:
            answer = await send(
                setup,
                "POST",
                "/orders/1",
                "cid-secret",
                json={"note": f"a{secret}b"},
                headers={"X-Tier": "gold"},
            )
            assert answer.status_code == 200
            record = await setup.record("cid-secret")
    assert record["variables"] == {"sent": "got a****b", "tier": "gold"}
    assert secret not in str(record)
