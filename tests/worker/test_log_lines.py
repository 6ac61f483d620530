"""Log lines: JSON or text, the chosen level, and the correlation id of the request in every
line a request causes (through a real worker and a real backend)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from portway.config import log_format
from portway.config.models import ApiProxy, Endpoint
from portway.config.revision import EnvironmentRevision
from portway.policies.contract import Pipeline, PolicyContext, Reply
from tests.support.logs import lines_of, restore_logging
from tests.worker.support import api, backends, gateway, revision
from tests.worker.test_processes import worker_process

log = logging.getLogger("portway.test.policy")
__all__ = ["restore_logging"]  # the fixture


class Chatty:
    """A pipeline that logs from each hook, as a failing policy would."""

    response_phase = True

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        log.warning("checking %s", ctx.request.path)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        log.info("answered %s", ctx.response.status if ctx.response else None)
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return None

    def on_log(self, ctx: PolicyContext) -> None:
        log.debug("done")  # below the chosen level: never written


async def test_every_line_a_request_causes_carries_its_correlation_id(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    log_format.configure("info", "json")
    assert os.environ[log_format.FORMAT_ENV] == "json"  # what spawned processes inherit

    def factory(a: ApiProxy, endpoint: Endpoint | None, rev: EnvironmentRevision) -> Pipeline:
        return Chatty()

    async with (
        backends("b") as (b,),
        gateway(revision(api("svc", "/", [b.url])), pipelines=factory) as gw,
        httpx.AsyncClient() as client,
    ):
        first = await client.get(gw.url + "/a", headers={"X-Correlation-ID": "cid-one"})
        second = await client.get(gw.url + "/b")  # the gateway makes one up
    assert first.status_code == second.status_code == 200
    made_up = second.headers["x-correlation-id"]
    lines = [line for line in lines_of(capfd.readouterr().err) if line["logger"] == log.name]
    assert [(line["message"], line["correlation_id"]) for line in lines] == [
        ("checking /a", "cid-one"),
        ("answered 200", "cid-one"),
        ("checking /b", made_up),
        ("answered 200", made_up),
    ]
    assert {line["level"] for line in lines} == {"warning", "info"}
    assert all(line["time"].endswith("+00:00") for line in lines)


def test_text_format_and_level(capfd: pytest.CaptureFixture[str], restore_logging: None) -> None:
    log_format.configure("warning", "text")
    token = log_format.CORRELATION_ID.set("cid-text")
    try:
        log.info("hidden")
        log.error("shown")
    finally:
        log_format.CORRELATION_ID.reset(token)
    log.error("outside")
    err = capfd.readouterr().err
    assert "hidden" not in err
    assert "ERROR portway.test.policy [cid-text] shown" in err
    assert "ERROR portway.test.policy [-] outside" in err


def test_exceptions_stay_one_json_line(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    log_format.configure("info", "json")
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        log.exception("failed")
    (line,) = [x for x in lines_of(capfd.readouterr().err) if x["logger"] == log.name]
    assert line["message"] == "failed"
    assert "ValueError: line one\nline two" in line["exception"]


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_choices_are_refused(level: str, fmt: str, restore_logging: None) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        log_format.configure(level, fmt)


def test_spawned_worker_processes_inherit_the_format(tmp_path: Path) -> None:
    rev = revision(api("svc", "/", ["http://127.0.0.1:9"]))
    env = {log_format.FORMAT_ENV: "json", log_format.LEVEL_ENV: "info"}
    with worker_process(tmp_path, rev.model_dump_json(), processes=2, env=env) as (_, ready):
        assert len(ready) == 2
    lines = lines_of((tmp_path / "worker.log").read_text())
    listening = [x for x in lines if x["message"].startswith("worker process")]
    assert sorted(x["message"].split()[2] for x in listening) == ["0", "1"]
