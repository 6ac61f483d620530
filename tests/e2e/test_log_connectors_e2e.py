"""A real worker process ships its traffic records to rsyslog through the syslog connector: the
request's correlation id arrives as an RFC 5424 message, and records made while rsyslog is down
arrive once it is back (the worker's spool)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portway.deploy.lab_ca import lab_certificates
from tests.e2e.conftest import Platform, platform  # noqa: F401 - the fixture
from tests.support.processes import wait_until
from tests.support.rsyslog import Rsyslog
from tests.support.servers import LOOPBACK


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    workdir = tmp_path / "rsyslog"
    workdir.mkdir()
    found = Rsyslog(workdir, lab_certificates(workdir, ["localhost", LOOPBACK]))
    yield found
    found.server.close()


def records(rsyslog: Rsyslog) -> dict[str, dict[str, object]]:
    found = {}
    for fields in rsyslog.lines():
        record = json.loads(fields[5])
        found[record["correlation_id"]] = record
    return found


def test_worker_records_reach_rsyslog_and_survive_its_outage(
    platform: Platform,  # noqa: F811
    rsyslog: Rsyslog,
) -> None:
    rsyslog.server.start()
    url = f"syslog+tcp://{LOOPBACK}:{rsyslog.tcp_port}?app_name=gateway"
    _, port = platform.start_worker("w1", extra=["--logs", url])
    api = {"name": "echo", "base_path": "/echo", "backends": [{"url": platform.backend_url}]}
    platform.call("POST", "/projects/default/apis", api, expect=201)
    platform.deploy("echo")

    def call(correlation_id: str) -> None:
        response = httpx.get(
            f"http://{LOOPBACK}:{port}/echo/hello",
            headers={"X-Correlation-ID": correlation_id},
            trust_env=False,
            timeout=10,
        )
        assert response.status_code == 200, response.text

    call("e2e-syslog-1")
    wait_until(lambda: "e2e-syslog-1" in records(rsyslog), "the record in rsyslog")
    first = records(rsyslog)["e2e-syslog-1"]
    assert (first["api"], first["status"], first["path"]) == ("echo", 200, "/echo/hello")
    [line] = [f for f in rsyslog.lines() if "e2e-syslog-1" in f[5]]
    assert line[1:3] == ["gateway", "traffic"]

    rsyslog.server.stop()
    for i in range(5):
        call(f"e2e-syslog-down-{i}")
    rsyslog.server.start()
    wait_until(
        lambda: all(f"e2e-syslog-down-{i}" in records(rsyslog) for i in range(5)),
        "the records made while rsyslog was down",
        timeout=60,
    )
