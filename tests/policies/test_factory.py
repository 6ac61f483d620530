from __future__ import annotations

from portway.config.models import ApiProxy, Backend, Endpoint, PolicyLists, PolicySpec
from portway.policies.contract import NO_PIPELINE
from portway.policies.factory import route_pipelines
from tests.policies.helpers import World, make_ctx


def throttle(name: str, limit: int) -> PolicySpec:
    return PolicySpec(name=name, type="throttling", config={"limit": limit})


def api(endpoints: list[Endpoint], policies: PolicyLists | None = None) -> ApiProxy:
    return ApiProxy(
        name="orders",
        base_path="/orders",
        backends=[Backend(url="http://127.0.0.1:9")],
        endpoints=endpoints,
        policies=policies or PolicyLists(),
    )


async def test_routes_without_policies_get_no_pipeline(world: World) -> None:
    factory = route_pipelines(world.make_services())
    assert factory(api([]), None, world.revision()) is NO_PIPELINE


async def test_proxy_limit_is_shared_by_every_endpoint_route(world: World) -> None:
    items = Endpoint(
        path="/items", methods=["GET"], policies=PolicyLists(request=[throttle("e", 9)])
    )
    users = Endpoint(path="/users")
    proxy = api([items, users], PolicyLists(request=[throttle("p", 3)]))
    factory = route_pipelines(world.make_services())
    revision = world.revision()
    routes = [factory(proxy, items, revision), factory(proxy, users, revision)]
    routes.append(factory(proxy, None, revision))
    outcomes = [await routes[i % 3].on_request(make_ctx()) is None for i in range(5)]
    assert outcomes == [True, True, True, False, False]
    keys = {(row["key"], row["policy"]) for row in world.make_services().stats.snapshot()}
    assert keys == {("default/orders", "p"), ("default/orders GET /items", "e")}
