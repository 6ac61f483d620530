"""Several base paths and host sets per API (``routes``), their conflicts across the APIs of an
environment, and an endpoint's own timeouts and retries carried on its compiled route."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from portway.compile.routes import compile_router, compile_routes
from portway.compile.routing import Match, NotAllowed
from portway.config.models import ApiProxy
from portway.errors import DeploymentError
from tests.worker.support import api, revision

BACKEND = ["http://127.0.0.1:9"]


def legacy() -> ApiProxy:
    return api(
        "orders",
        "/v2/orders",
        BACKEND,
        hosts=["api.example"],
        routes=[
            {"base_path": "/orders"},  # the API's hosts
            {"base_path": "/legacy/orders/{tenant}", "hosts": ["old.example", "*.corp.example"]},
            {"base_path": "/any-host", "hosts": []},
        ],
        endpoints=[{"path": "/{id}", "methods": ["GET"]}],
    )


def matched(router: Any, host: str, path: str, method: str = "GET") -> Match[Any]:
    found = router.match(host, method, path)
    assert isinstance(found, Match), (host, path, found)
    return found


def test_an_api_answers_on_each_of_its_base_paths_and_hosts() -> None:
    router = compile_router(revision(legacy()))
    for host, path, rest in [
        ("api.example", "/v2/orders/7", "/7"),
        ("api.example", "/orders/7", "/7"),
        ("old.example", "/legacy/orders/acme/7", "/7"),
        ("x.corp.example", "/legacy/orders/acme/7", "/7"),
        ("anything", "/any-host/7", "/7"),
    ]:
        found = matched(router, host, path)
        assert found.value.api.name == "orders"
        assert found.endpoint  # the endpoint's route, whichever base path it came in on
        assert found.rest == rest  # forwarded without the base path it came in on
    assert matched(router, "old.example", "/legacy/orders/acme/7").params == {
        "tenant": "acme",
        "id": "7",
    }
    # each route keeps its own hosts: no cross-over
    assert router.match("old.example", "GET", "/orders/7") is None
    assert router.match("api.example", "GET", "/legacy/orders/acme/7") is None
    assert router.match("elsewhere", "GET", "/v2/orders/7") is None
    # the API's methods and endpoints hold on every base path
    assert isinstance(router.match("api.example", "POST", "/orders/7"), NotAllowed)


def test_a_route_that_collides_with_another_api_is_refused() -> None:
    other = api("other", "/orders", BACKEND, hosts=["api.example"])
    with pytest.raises(DeploymentError, match=r"both serve /orders on api.example"):
        compile_router(revision(legacy(), other))
    # {param} segments alike, on a wildcard host
    tenant = api("tenant", "/legacy/orders/{t}", BACKEND, hosts=["*.corp.example"])
    with pytest.raises(DeploymentError, match=r"both serve /legacy/orders/\{tenant\}"):
        compile_router(revision(tenant, legacy()))
    # a route on any host collides with an API on any host
    anyhost = api("anyhost", "/any-host", BACKEND)
    with pytest.raises(DeploymentError, match="on any host"):
        compile_router(revision(legacy(), anyhost))
    # another host set is no conflict
    fine = api("fine", "/orders", BACKEND, hosts=["new.example"])
    assert compile_router(revision(legacy(), fine)).size > 0


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"base_path": "/v2/orders"}], "routes[0]: /v2/orders on api.example is declared twice"),
        ([{"base_path": "/a"}, {"base_path": "/a"}], "routes[1]: /a on api.example"),
        ([{"base_path": "/_portway/x"}], "/_portway is reserved for the platform"),
        ([{"base_path": "relative"}], "base_path must start with '/'"),
        ([{"base_path": "/a/../b"}], "must not contain '.' or '..' segments"),
        ([{"base_path": "/a", "hosts": ["bad host"]}], "'bad host' is not a host name"),
        ([{"base_path": "/a", "other": 1}], "Extra inputs are not permitted"),
        ([{"base_path": f"/r{i}"} for i in range(101)], "at most 100 items"),
    ],
)
def test_routes_are_validated(routes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        api("orders", "/v2/orders", BACKEND, hosts=["api.example"], routes=routes)


def test_an_endpoint_connection_overrides_the_apis_field_by_field() -> None:
    proxy = api(
        "slow",
        "/slow",
        BACKEND,
        connection={"read_timeout": 30, "total_timeout": 60, "retries": 2},
        endpoints=[
            {"path": "/fast", "connection": {"total_timeout": 0.5, "retries": 0}},
            {"path": "/plain"},
        ],
    )
    router: Any = compile_routes(revision(proxy))
    fast = matched(router, "h", "/slow/fast").value
    assert fast.connection is not None
    assert (fast.connection.total_timeout, fast.connection.retries) == (0.5, 0)
    assert fast.connection.read_timeout == 30  # not set on the endpoint: the API's
    assert matched(router, "h", "/slow/plain").value.connection is None
    assert matched(router, "h", "/slow/other").value.connection is None
    for bad in ({"total_timeout": 0}, {"retries": 11}, {"read_timeout": "soon"}, {"pool_size": 1}):
        with pytest.raises(ValidationError):
            api("x", "/x", BACKEND, endpoints=[{"path": "/e", "connection": bad}])
