"""Capture settings: each region's headers and bodies opt in, size caps, masking rules, and
credentials masked whatever the client tries (header case, repeated headers, keys in the query
string, a backend echoing them). Through a real worker and a real (echoing) backend; the record
is read back from the SQLite traffic log."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from portway.errors import DeploymentError
from portway.worker.runtime import compile_runtime
from portway.worker.settings import WorkerSettings
from tests.policies.helpers import consumer
from tests.worker.support import api, backends, revision
from tests.worker.traffic_support import Setup, logged_gateway, send

KEY = "k-" + "5" * 30
TOKEN = "tok-secret-123"
EVERYTHING = {
    "request": {"headers": True, "body": True},
    "query": True,
    "backend_request": {"headers": True, "body": True},
    "backend_response": {"headers": True, "body": True},
    "response": {"headers": True, "body": True},
    "max_body_bytes": 4096,
    "mask_headers": ["X-Secret"],
    "mask_query": ["session"],
    "mask_json": ["$.card.number", "$..cvv"],
    "mask_xml": ["/order/card/number", "/order/@token"],
}


@contextlib.asynccontextmanager
async def capturing(tmp_path: Path) -> AsyncIterator[Setup]:
    async with backends("echo") as (echo,):
        rev = revision(
            api(
                "orders",
                "/orders",
                [echo.url],
                policies={"request": [{"name": "key", "type": "api_key"}]},
                capture=EVERYTHING,
            ),
            api(
                "by-query",
                "/q",
                [echo.url],
                policies={
                    "request": [
                        {
                            "name": "key",
                            "type": "api_key",
                            "config": {
                                "location": "query",
                                "key_name": "pass_word_x",
                                "check_grant": False,
                                "strip_credential": False,  # the key goes on: mask it
                            },
                        }
                    ]
                },
            ),
            api(
                "quiet",
                "/quiet",
                [echo.url],
                capture={"request": {"headers": True}, "environments": {"test": {}}},
            ),
        ).model_copy(update={"consumers": [consumer("shop", api_key=KEY)]})
        async with logged_gateway(tmp_path, rev, echo) as setup:
            yield setup


def header(region: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in region["headers"] if k == name]


async def test_every_region_is_captured_and_every_credential_masked(tmp_path: Path) -> None:
    body = {"card": {"number": "4111111111111111", "cvv": "123"}, "items": [{"cvv": "987"}]}
    async with capturing(tmp_path) as setup:
        answer = await send(
            setup,
            "POST",
            "/orders/pay?session=s-e-s-s&API_KEY=qk-12345&x=1",
            "cid-capture",
            json=body,
            headers=[
                ("x-API-key", KEY),  # any case
                ("Authorization", f"Bearer {TOKEN}"),
                ("X-SECRET", "first-secret"),  # repeated, in two spellings
                ("x-secret", "second-secret"),
                ("Cookie", "sid=cookie-value-1"),
                ("X-Visible", "plain"),
            ],
        )
        assert answer.status_code == 200, answer.text
        record = await setup.record("cid-capture")
    dumped = json.dumps(record)
    for secret in (KEY, TOKEN, "first-secret", "second-secret", "cookie-value-1", "qk-12345"):
        assert secret not in dumped, secret
    for masked_value in ("4111111111111111", "s-e-s-s", '"123"', '"987"'):
        assert masked_value not in dumped, masked_value
    detail = record["detail"]
    request = detail["request"]
    assert header(request, "x-api-key") == ["****"]
    assert header(request, "authorization") == ["****"]
    assert header(request, "x-secret") == ["****", "****"]
    assert header(request, "cookie") == ["****"]
    assert header(request, "x-visible") == ["plain"]
    assert request["query"] == [["session", "****"], ["API_KEY", "****"], ["x", "1"]]
    sent = json.loads(request["body"]["text"])
    assert sent == {"card": {"number": "****", "cvv": "****"}, "items": [{"cvv": "****"}]}
    assert request["body"]["bytes"] == record["request_bytes"]
    # to the backend: what the worker sent (the correlation id added, the query masked)
    assert header(detail["backend_request"], "x-correlation-id") == ["cid-capture"]
    assert record["backend_path"] == "/pay?session=****&API_KEY=****&x=1"
    # the echoing backend repeats the credentials in its body: masked there too
    echoed = json.loads(detail["backend_response"]["body"]["text"])
    assert ["authorization", "****"] in echoed["headers"]
    assert ["x-secret", "****"] in echoed["headers"]
    assert header(detail["backend_response"], "x-backend") == ["echo"]
    assert header(detail["response"], "x-correlation-id") == ["cid-capture"]
    assert detail["response"]["body"]["bytes"] == len(answer.content)


async def test_xml_fields_and_attributes_are_masked(tmp_path: Path) -> None:
    xml = b'<order token="tk-77777"><card><number>4000123412341234</number></card><n>ok</n></order>'
    async with capturing(tmp_path) as setup:
        answer = await send(
            setup,
            "PUT",
            "/orders/x",
            "cid-xml",
            content=xml,
            headers={"X-Api-Key": KEY, "Content-Type": "application/xml"},
        )
        assert answer.status_code == 200
        record = await setup.record("cid-xml")
    text = record["detail"]["request"]["body"]["text"]
    assert "4000123412341234" not in text
    assert "tk-77777" not in text
    assert text == '<order token="****"><card><number>****</number></card><n>ok</n></order>'


async def test_bodies_that_cannot_be_masked_are_left_out(tmp_path: Path) -> None:
    big = {"card": {"number": "4111"}, "pad": "p" * 5000}
    async with capturing(tmp_path) as setup:
        await send(setup, "POST", "/orders/a", "cid-big", json=big, headers={"X-Api-Key": KEY})
        await send(
            setup,
            "POST",
            "/orders/b",
            "cid-broken",
            content=b'{"card": {"number": "4111"',
            headers={"X-Api-Key": KEY, "Content-Type": "application/json"},
        )
        await send(
            setup,
            "POST",
            "/orders/c",
            "cid-text",
            content=b"t" * 5000,
            headers={"X-Api-Key": KEY, "Content-Type": "text/plain"},
        )
        big_record = await setup.record("cid-big")
        broken = await setup.record("cid-broken")
        text = await setup.record("cid-text")
    assert big_record["detail"]["request"]["body"] == {
        "bytes": big_record["request_bytes"],
        "omitted": "too large to mask",
    }
    assert broken["detail"]["request"]["body"]["omitted"] == "cannot be parsed to mask"
    assert "4111" not in json.dumps(broken)
    plain = text["detail"]["request"]["body"]
    assert plain == {"bytes": 5000, "truncated": True, "text": "t" * 4096}


async def test_uncaptured_apis_still_mask_keys_in_the_backend_target(tmp_path: Path) -> None:
    async with capturing(tmp_path) as setup:
        answer = await send(setup, "GET", f"/q/items?pass_word_x={KEY}&page=2", "cid-q")
        assert answer.status_code == 200
        quiet = await send(setup, "GET", "/quiet/x", "cid-quiet")
        assert quiet.status_code == 200
        record = await setup.record("cid-q")
        quiet_record = await setup.record("cid-quiet")
    assert "detail" not in record  # nothing captured for this API
    assert KEY not in json.dumps(record)
    assert record["backend_path"] == "/items?pass_word_x=****&page=2"
    assert "detail" not in quiet_record  # the environment's own setting (nothing) wins


@pytest.mark.parametrize(
    ("capture", "message"),
    [
        ({"mask_json": ["card.number"]}, "is not a JSONPath"),
        ({"mask_xml": ["order/number"]}, "is not an absolute ElementPath"),
        ({"max_body_bytes": -1}, "greater than or equal to 0"),
        ({"request": {"headers": "yes"}}, "valid boolean"),
    ],
)
def test_bad_capture_settings_are_refused_with_their_field(
    capture: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        api("x", "/x", ["http://127.0.0.1:9"], capture=capture)


def test_a_jsonpath_the_worker_cannot_compile_refuses_the_revision() -> None:
    bad = api("x", "/x", ["http://127.0.0.1:9"], capture={"mask_json": ["$[?(@.a)]"]})
    with pytest.raises(DeploymentError, match="capture rules do not compile"):
        compile_runtime(revision(bad), WorkerSettings(host="127.0.0.1", port=0, processes=1))


async def test_secret_variable_values_are_masked_wherever_they_appear(tmp_path: Path) -> None:
    """A secret environment variable expanded into a header the worker adds (and echoed back by
    the backend) never reaches a traffic record, whatever the header's name."""
    from portway.config.revision import expanded_revision
    from portway.config.variables import RevisionVariable

    secret = "var-secret-0f9e8d7c"
    async with backends("echo") as (echo,):
        written = api(
            "keyed",
            "/keyed",
            [echo.url],
            policies={
                "request": [
                    {
                        "name": "key",
                        "type": "rewrite",
                        "config": {
                            "request_headers": {"set": {"x-upstream-auth": "k=${env.KEY}"}},
                            "query": {"set": {"token": "${env.KEY}"}},
                        },
                    }
                ]
            },
            capture=EVERYTHING,
        )
        variables = {"KEY": RevisionVariable(value=secret, secret=True)}
        rev = expanded_revision(revision(written).model_copy(update={"variables": variables}))
        assert rev.secret_values == [secret]
        async with logged_gateway(tmp_path, rev, echo) as setup:
            answer = await send(setup, "GET", "/keyed/x?plain=1", "cid-var")
            assert answer.status_code == 200, answer.text
            assert secret in answer.text  # the backend did receive it
            record = await setup.record("cid-var")
    dumped = json.dumps(record)
    assert secret not in dumped
    detail = record["detail"]
    assert header(detail["backend_request"], "x-upstream-auth") == ["****"]
    assert "token=****" in record["backend_path"]
    echoed = json.loads(detail["backend_response"]["body"]["text"])
    assert ["x-upstream-auth", "****"] in echoed["headers"]
