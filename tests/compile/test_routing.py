"""The routing table: hosts, prefixes, templates, methods, most specific wins."""

from __future__ import annotations

import pytest

from portway.compile.routes import compile_router
from portway.compile.routing import EndpointMount, Match, Mount, NotAllowed, Router
from portway.errors import DeploymentError
from tests.worker.support import api, revision


def router(*mounts: Mount[str]) -> Router[str]:
    return Router(mounts)


def value(result: Match[str] | NotAllowed[str] | None) -> str | None:
    assert not isinstance(result, NotAllowed)
    return result.value if result is not None else None


def test_longest_prefix_wins_on_segment_boundaries() -> None:
    r = router(Mount("/", "root"), Mount("/api", "api"), Mount("/api/v2", "v2"))
    assert value(r.match("h", "GET", "/api/v2/x")) == "v2"
    assert value(r.match("h", "GET", "/api/v2")) == "v2"
    assert value(r.match("h", "GET", "/api/v21")) == "api"
    assert value(r.match("h", "GET", "/apix")) == "root"
    assert value(r.match("h", "GET", "/")) == "root"
    match = r.match("h", "GET", "/api/v2/a/b")
    assert isinstance(match, Match)
    assert match.rest == "/a/b"


def test_templates_and_literal_before_param() -> None:
    r = router(Mount("/users/{id}", "user"), Mount("/users/me", "me"))
    me = r.match("h", "GET", "/users/me/x")
    assert isinstance(me, Match)
    assert me.value == "me"
    other = r.match("h", "GET", "/users/42/orders")
    assert isinstance(other, Match)
    assert other.value == "user"
    assert other.params == {"id": "42"}
    assert other.rest == "/orders"
    assert r.match("h", "GET", "/users") is None


def test_endpoints_inside_an_api() -> None:
    r = router(
        Mount(
            "/shop",
            "shop",
            endpoints=[
                EndpointMount("/orders/{order}", frozenset({"GET"}), "get-order"),
                EndpointMount("/orders/{order}", frozenset(), "any-order"),
                EndpointMount("/orders/latest", frozenset({"GET"}), "latest"),
                EndpointMount("/", frozenset(), "index"),
            ],
        )
    )
    got = r.match("h", "GET", "/shop/orders/7")
    assert isinstance(got, Match)
    assert (got.value, got.params, got.endpoint) == ("get-order", {"order": "7"}, True)
    assert value(r.match("h", "DELETE", "/shop/orders/7")) == "any-order"
    assert value(r.match("h", "GET", "/shop/orders/latest")) == "latest"
    assert value(r.match("h", "GET", "/shop")) == "index"
    assert value(r.match("h", "GET", "/shop/")) == "index"
    assert value(r.match("h", "GET", "/shop/other")) == "shop"


def test_a_method_no_matching_endpoint_lists_is_405_unless_the_api_falls_through() -> None:
    endpoints = [
        EndpointMount("/data/{id}", frozenset({"GET"}), "get-data"),
        EndpointMount("/data/{id}", frozenset({"PUT"}), "put-data"),
        EndpointMount("/items/latest", frozenset({"POST"}), "post-latest"),
        EndpointMount("/items/{id}", frozenset(), "any-item"),
    ]
    strict = router(Mount("/s", "api", endpoints=endpoints))
    denied = strict.match("h", "DELETE", "/s/data/42")
    assert isinstance(denied, NotAllowed)
    assert denied.allowed == {"GET", "HEAD", "PUT"}
    assert isinstance(strict.match("h", "DELETE", "/s/data/42/"), NotAllowed)
    assert value(strict.match("h", "HEAD", "/s/data/42")) == "get-data"
    assert value(strict.match("h", "GET", "/s/data/42/")) == "get-data"
    # another endpoint that allows the method wins over 405
    assert value(strict.match("h", "GET", "/s/items/latest")) == "any-item"
    # a path no endpoint matches is the API's own
    assert value(strict.match("h", "DELETE", "/s/data/42/x")) == "api"
    loose = router(Mount("/s", "api", endpoints=endpoints, fallthrough=True))
    assert value(loose.match("h", "DELETE", "/s/data/42")) == "api"


def test_hosts_exact_then_wildcard_then_any() -> None:
    r = router(
        Mount("/", "any"),
        Mount("/", "wild", hosts=["*.example.com"]),
        Mount("/", "deep-wild", hosts=["*.eu.example.com"]),
        Mount("/", "exact", hosts=["api.example.com"]),
        Mount("/only", "port", hosts=["api.example.com:8443"]),
    )
    assert value(r.match("api.example.com", "GET", "/x")) == "exact"
    assert value(r.match("api.example.com:8080", "GET", "/x")) == "exact"
    assert value(r.match("api.example.com:8443", "GET", "/only")) == "port"
    assert value(r.match("www.example.com", "GET", "/x")) == "wild"
    assert value(r.match("a.eu.example.com", "GET", "/x")) == "deep-wild"
    assert value(r.match("example.com", "GET", "/x")) == "any"
    assert value(r.match("", "GET", "/x")) == "any"


def test_a_host_table_without_a_match_falls_back() -> None:
    r = router(Mount("/a", "exact-a", hosts=["h"]), Mount("/b", "any-b"))
    assert value(r.match("h", "GET", "/b")) == "any-b"


def test_methods() -> None:
    r = router(
        Mount("/x", "reader", methods=frozenset({"GET", "HEAD"})),
        Mount("/x", "writer", methods=frozenset({"POST"}), hosts=["w"]),
    )
    assert value(r.match("h", "GET", "/x")) == "reader"
    result = r.match("h", "DELETE", "/x")
    assert isinstance(result, NotAllowed)
    assert result.allowed == {"GET", "HEAD"}


def test_trace_reaches_only_what_names_it() -> None:
    endpoints = [
        EndpointMount("/any", frozenset(), "any-endpoint"),
        EndpointMount("/debug", frozenset({"TRACE"}), "trace-endpoint"),
    ]
    r = router(
        Mount("/open", "open", endpoints=endpoints),
        Mount("/loose", "loose", endpoints=endpoints, fallthrough=True),
        Mount("/traced", "traced", methods=frozenset({"GET", "TRACE"}), endpoints=endpoints),
    )
    for path in ("/open", "/open/x", "/open/any", "/loose", "/loose/any"):
        refused = r.match("h", "TRACE", path)
        assert isinstance(refused, NotAllowed), path
        assert refused.allowed == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    # every other method still reaches an API or endpoint that lists none
    for method in ("GET", "POST", "DELETE", "OPTIONS", "PROPFIND"):
        assert value(r.match("h", method, "/open/x")) == "open"
        assert value(r.match("h", method, "/open/any")) == "any-endpoint"
    # a list that names TRACE admits it: the endpoint's, or the API's for its own route and
    # for its endpoints that list no methods
    assert value(r.match("h", "TRACE", "/open/debug")) == "trace-endpoint"
    assert value(r.match("h", "TRACE", "/traced")) == "traced"
    assert value(r.match("h", "TRACE", "/traced/any")) == "any-endpoint"
    assert value(r.match("h", "TRACE", "/traced/any/x")) == "traced"
    # another API on the same path that names TRACE answers it
    both = router(
        Mount("/p", "any"), Mount("/p", "tracing", methods=frozenset({"TRACE"}), hosts=["t"])
    )
    assert isinstance(both.match("h", "TRACE", "/p"), NotAllowed)
    assert value(both.match("t", "TRACE", "/p")) == "tracing"


def test_percent_encoded_segments_match_decoded() -> None:
    r = router(Mount("/caf\u00e9", "cafe"), Mount("/files/{name}", "file"))
    assert value(r.match("h", "GET", "/caf%C3%A9/x")) == "cafe"
    got = r.match("h", "GET", "/files/a%20b")
    assert isinstance(got, Match)
    assert got.params == {"name": "a b"}
    assert got.rest == ""


def test_lookup_does_not_depend_on_route_count() -> None:
    many = [Mount(f"/svc{i}/v1", f"svc{i}") for i in range(10_000)]
    r = Router(many)
    assert r.size == 10_000
    assert value(r.match("h", "GET", "/svc9999/v1/items")) == "svc9999"
    assert r.match("h", "GET", "/svc10000/v1") is None


def test_compile_router_rejects_conflicting_apis() -> None:
    a = api("a", "/same", ["http://127.0.0.1:1"])
    b = api("b", "/same", ["http://127.0.0.1:2"])
    with pytest.raises(DeploymentError, match=r"both serve /same on any host"):
        compile_router(revision(a, b))
    c = api("c", "/same", ["http://127.0.0.1:2"], hosts=["other"])
    assert compile_router(revision(a, c)).size == 2
