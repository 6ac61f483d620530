"""The manager's compile check runs the worker's compilation: what a worker refuses, the check
refuses first, for the same reason; what failed is never remembered as compiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portway.compile.check import RevisionCheck
from portway.config.models import ApiProxy
from portway.config.revision import EnvironmentRevision
from portway.errors import DeploymentError
from portway.policies.factory import route_pipelines
from portway.policies.resources import PolicyServices
from portway.stores.cache_local import LocalCache
from portway.worker.runtime import compile_runtime
from tests.worker.support import api, revision

BAD_IP_FILTER = {
    "request": [{"name": "ips", "type": "ip_filter", "config": {"deny": ["not-an-address"]}}]
}


def worker_refusal(snapshot: EnvironmentRevision) -> str:
    services = PolicyServices(environment="test", cache=LocalCache(), local_cache=LocalCache())
    with pytest.raises(DeploymentError) as refused:
        compile_runtime(snapshot, pipeline_factory=route_pipelines(services))
    return str(refused.value)


def refusals(snapshot: EnvironmentRevision) -> tuple[str, str]:
    with pytest.raises(DeploymentError) as refused:
        RevisionCheck()(snapshot)
    return str(refused.value), worker_refusal(snapshot)


def broken_endpoint() -> ApiProxy:
    return api(
        "broken",
        "/broken",
        ["http://127.0.0.1:9"],
        endpoints=[{"path": "/items/{id}", "policies": BAD_IP_FILTER}],
    )


@pytest.mark.parametrize(
    ("apis", "reason"),
    [
        ((broken_endpoint(),), "default/broken * /items/{id}: endpoint.request[0].config.deny"),
        (
            (api("proxy", "/p", ["http://127.0.0.1:9"], policies=BAD_IP_FILTER),),
            "default/proxy: proxy.request[0].config.deny",
        ),
        (
            (
                api("a", "/same/{x}", ["http://127.0.0.1:9"]),
                api("b", "/same/{y}", ["http://127.0.0.1:9"]),
            ),
            "both serve /same/{y} on any host",
        ),
    ],
    ids=["endpoint-policy", "proxy-policy", "conflicting-routes"],
)
def test_the_check_refuses_what_a_worker_refuses(apis: tuple[ApiProxy, ...], reason: str) -> None:
    checked, served = refusals(revision(*apis, number=7))
    assert checked.startswith("revision 7 does not compile: ")
    assert reason in checked
    assert checked.removeprefix("revision 7 does not compile: ") == served


def test_an_unloadable_ca_bundle_is_refused_like_the_worker_refuses_it(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    https = api("tls", "/tls", ["https://127.0.0.1:9"], connection={"ca_bundle": str(bundle)})
    checked, served = refusals(revision(https))
    assert "default/tls: connection.ca_bundle:" in checked
    assert checked.endswith(served)


def test_a_revision_that_compiles_passes_and_a_failure_is_not_remembered() -> None:
    check = RevisionCheck()
    good: dict[str, Any] = {
        "policies": {
            "request": [{"name": "ips", "type": "ip_filter", "config": {"deny": ["10.0.0.0/8"]}}]
        }
    }
    fine = api("fine", "/fine", ["https://127.0.0.1:9"], **good)
    for _ in range(2):  # the second time from memory: still passes
        check(revision(fine))
    for _ in range(2):  # a failure is checked again, every time
        with pytest.raises(DeploymentError, match="broken \\* /items"):
            check(revision(fine, broken_endpoint()))
    check(revision(fine, number=2))
