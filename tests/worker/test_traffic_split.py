"""Backend groups (canary, blue/green), routing rules and sticky sessions through a real gateway
and real backends; splits are measured over many requests against a binomial bound."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import httpx

from portway.worker.settings import WorkerSettings
from tests.worker.support import api, backends, gateway, revision
from tests.worker.test_upstreams import dead_url


def within(count: int, total: int, share: float, sigmas: float = 5.0) -> bool:
    """``count`` of ``total`` draws is within ``sigmas`` standard deviations of ``share``
    (a false alarm about once in 3.5 million runs at 5)."""
    spread = sigmas * math.sqrt(total * share * (1 - share))
    return abs(count - total * share) <= spread


def split_api(default: list[str], groups: dict[str, list[str]], **traffic: Any) -> Any:
    return api(
        "svc",
        "/svc",
        default,
        traffic={
            "groups": [
                {"name": name, "backends": [{"url": u} for u in urls]}
                for name, urls in groups.items()
            ],
            **traffic,
        },
    )


async def answered_by(
    client: httpx.AsyncClient, url: str, count: int, headers: Any = None
) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(count):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        got[response.headers["x-backend"]] += 1
    return got


async def test_weighted_split_between_groups_is_within_the_binomial_bound() -> None:
    async with backends("stable1", "stable2", "canary") as (s1, s2, canary):
        rev = revision(
            split_api(
                [s1.url, s2.url], {"canary": [canary.url]}, weights={"default": 80, "canary": 20}
            )
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            got = await answered_by(client, f"{gw.url}/svc/x", 1000)
    assert within(got["canary"], 1000, 0.2), got
    # the default group keeps its own round robin over its two addresses
    assert abs(got["stable1"] - got["stable2"]) <= 1, got


async def test_blue_green_flip_moves_every_request() -> None:
    async with backends("blue", "green") as (blue, green):
        flip = split_api([blue.url], {"green": [green.url]}, weights={"default": 0, "green": 1})
        async with gateway(revision(flip)) as gw, httpx.AsyncClient() as client:
            assert await answered_by(client, f"{gw.url}/svc/x", 50) == {"green": 50}
            back = split_api([blue.url], {"green": [green.url]}, weights={"default": 1})
            await gw.deploy(revision(back, number=2))
            assert await answered_by(client, f"{gw.url}/svc/x", 50) == {"blue": 50}


async def test_header_and_cookie_rules_come_before_the_weights() -> None:
    async with backends("stable", "canary") as (stable, canary):
        rules = [
            {"header": "X-Canary", "values": ["on"], "group": "canary"},
            {"cookie": "beta", "group": "canary"},
        ]
        rev = revision(
            split_api([stable.url], {"canary": [canary.url]}, weights={"default": 100}, rules=rules)
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            assert await answered_by(client, url, 10) == {"stable": 10}
            assert await answered_by(client, url, 10, {"X-Canary": "on"}) == {"canary": 10}
            # header names are case-insensitive, values are compared exactly
            assert await answered_by(client, url, 5, {"x-CANARY": "on"}) == {"canary": 5}
            for value in ("ON", "on,on", "onn", ""):
                assert await answered_by(client, url, 3, {"X-Canary": value}) == {"stable": 3}
            # the header twice: the same value is that value, different values are ambiguous
            same = [("X-Canary", "on"), ("X-Canary", "on")]
            assert await answered_by(client, url, 3, same) == {"canary": 3}
            mixed = [("X-Canary", "off"), ("X-Canary", "on")]
            assert await answered_by(client, url, 3, mixed) == {"stable": 3}
            # a cookie rule without values: present with any value
            assert await answered_by(client, url, 3, {"Cookie": "a=1; beta=x"}) == {"canary": 3}
            # cookie names are case-sensitive; a cookie twice with two values is ambiguous
            for cookie in ("Beta=x", "beta=1; beta=2", "betax=1", "beta"):
                got = await answered_by(client, url, 3, {"Cookie": cookie})
                assert got == {"stable": 3}, cookie
            two_headers = [("Cookie", "beta=1"), ("Cookie", "beta=1")]
            assert await answered_by(client, url, 3, two_headers) == {"canary": 3}
            # a long cookie header of many cookies is read whole; a long value is compared whole
            many = "; ".join(f"c{i}={'v' * 20}" for i in range(200))
            assert await answered_by(client, url, 2, {"Cookie": many}) == {"stable": 2}
            tail = {"Cookie": many + "; beta=1"}
            assert await answered_by(client, url, 2, tail) == {"canary": 2}
            long_value = {"X-Canary": "on" + "n" * 4000}
            assert await answered_by(client, url, 2, long_value) == {"stable": 2}


def sticky_cookie(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    name, _, rest = header.partition("=")
    assert name == "portway_sticky"
    return rest.split(";", 1)[0]


async def test_sticky_cookie_pins_the_address_and_forgeries_are_ignored() -> None:
    async with backends("a", "b", "c") as bs:
        rev = revision(
            api(
                "svc",
                "/svc",
                [b.url for b in bs],
                traffic={"sticky": {"mode": "cookie", "max_age": 600}},
            )
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            first = await client.get(url)
            header = first.headers["set-cookie"]
            assert "Path=/svc" in header
            assert "HttpOnly" in header
            assert "Max-Age=600" in header
            assert "127.0.0.1" not in header  # the address stays opaque
            value = sticky_cookie(first)
            home = first.headers["x-backend"]
            cookie = {"Cookie": f"portway_sticky={value}"}
            repeat = [await client.get(url, headers=cookie) for _ in range(20)]
            assert {r.headers["x-backend"] for r in repeat} == {home}
            assert all("set-cookie" not in r.headers for r in repeat)  # already right

            ident, _, tag = value.partition(".")
            forged = [
                f"{ident}.{'A' * len(tag)}",  # the right id, a made-up tag
                f"{ident}.",
                ident,
                f"AAAAAAAA.{tag}",  # another id with this tag
                value + "x",
                value * 3,  # oversize
                "",
            ]
            for bad in forged:
                got = await answered_by(client, url, 9, {"Cookie": f"portway_sticky={bad}"})
                assert len(got) == 3, (bad, got)  # plain round robin: not pinned
                response = await client.get(url, headers={"Cookie": f"portway_sticky={bad}"})
                assert sticky_cookie(response) != bad  # replaced by a valid one
            # the cookie twice with different values is ambiguous: not pinned
            twice = {"Cookie": f"portway_sticky={value}; portway_sticky=other"}
            assert len(await answered_by(client, url, 9, twice)) == 3


async def test_sticky_cookie_of_another_api_does_not_verify() -> None:
    async with backends("a", "b") as (a, b):
        one = api("one", "/one", [a.url, b.url], traffic={"sticky": {"mode": "cookie"}})
        two = api("two", "/two", [a.url, b.url], traffic={"sticky": {"mode": "cookie"}})
        async with gateway(revision(one, two)) as gw, httpx.AsyncClient() as client:
            value = sticky_cookie(await client.get(f"{gw.url}/one/x"))
            cookie = {"Cookie": f"portway_sticky={value}"}
            got = await answered_by(client, f"{gw.url}/two/x", 10, cookie)
            assert got == {"a": 5, "b": 5}


async def test_sticky_cookie_moves_when_its_address_is_gone_or_its_group_gets_no_traffic() -> None:
    async with backends("blue1", "blue2", "green") as (blue1, blue2, green):
        traffic = {"sticky": {"mode": "cookie"}}
        both = split_api(
            [blue1.url, blue2.url], {"green": [green.url]}, weights={"default": 1}, **traffic
        )
        async with gateway(revision(both)) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            first = await client.get(url)
            home = first.headers["x-backend"]
            cookie = {"Cookie": f"portway_sticky={sticky_cookie(first)}"}
            # the pinned address stops answering: another of its group answers, and re-pins
            gone = blue1 if home == "blue1" else blue2
            assert gone.server is not None
            await gone.server.close(1.0)
            moved = await client.get(url, headers=cookie)
            assert moved.status_code == 200
            assert moved.headers["x-backend"] != home
            assert sticky_cookie(moved) != cookie["Cookie"].split("=", 1)[1]

            kept = {"Cookie": f"portway_sticky={sticky_cookie(moved)}"}
            again = await client.get(url, headers=kept)
            assert again.headers["x-backend"] == moved.headers["x-backend"]

            # blue/green flip: a cookie for a group without weight no longer pins
            flipped = split_api(
                [blue1.url, blue2.url],
                {"green": [green.url]},
                weights={"default": 0, "green": 1},
                **traffic,
            )
            await gw.deploy(revision(flipped, number=2))
            after = await client.get(url, headers=kept)
            assert after.headers["x-backend"] == "green"
            assert "set-cookie" in after.headers


async def test_consistent_hash_on_a_header_keeps_keys_where_they_were() -> None:
    async with backends("a", "b", "c") as (a, b, c):
        sticky = {"sticky": {"mode": "hash", "hash_on": "header", "hash_name": "X-User"}}
        three = api("svc", "/svc", [a.url, b.url, c.url], traffic=sticky)
        async with gateway(revision(three)) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            placed: dict[str, str] = {}
            for user in range(60):
                got = await answered_by(client, url, 3, {"X-User": f"user-{user}"})
                assert len(got) == 1  # every request of a key on one address
                placed[f"user-{user}"] = next(iter(got))
            assert set(placed.values()) == {"a", "b", "c"}
            assert "set-cookie" not in (await client.get(url, headers={"X-User": "u"})).headers
            # without the header: plain balancing
            assert len(await answered_by(client, url, 9)) == 3

            # take c away: only c's keys move
            two = api("svc", "/svc", [a.url, b.url], traffic=sticky)
            await gw.deploy(revision(two, number=2))
            for key, was in placed.items():
                now = await answered_by(client, url, 1, {"X-User": key})
                if was != "c":
                    assert now == {was: 1}, key


async def test_consistent_hash_spreads_keys_over_the_weights() -> None:
    async with backends("stable", "canary") as (stable, canary):
        rev = revision(
            split_api(
                [stable.url],
                {"canary": [canary.url]},
                weights={"default": 70, "canary": 30},
                sticky={"mode": "hash", "hash_on": "cookie", "hash_name": "session"},
            )
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            got: Counter[str] = Counter()
            for session in range(600):
                cookie = {"Cookie": f"session=s{session}"}
                first = await answered_by(client, url, 2, cookie)
                assert len(first) == 1
                got.update(first.keys())
    assert within(got["canary"], 600, 0.3), got


async def test_sticky_cookie_is_secure_only_when_the_client_came_over_https() -> None:
    async with backends("a", "b") as (a, b):
        rev = revision(api("svc", "/svc", [a.url, b.url], traffic={"sticky": {"mode": "cookie"}}))
        trusting = WorkerSettings(
            host="127.0.0.1", port=0, processes=1, trusted_proxies=["127.0.0.1/32"]
        )
        async with gateway(rev, settings=trusting) as gw, httpx.AsyncClient() as client:
            url = f"{gw.url}/svc/x"
            secure = await client.get(url, headers={"X-Forwarded-Proto": "https"})
            assert secure.headers["set-cookie"].endswith("; Secure")
            plain = await client.get(url)
            assert "Secure" not in plain.headers["set-cookie"]
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            # an untrusted peer's X-Forwarded-Proto is replaced: the hop was plain HTTP
            spoofed = await client.get(f"{gw.url}/svc/x", headers={"X-Forwarded-Proto": "https"})
            assert "Secure" not in spoofed.headers["set-cookie"]


async def test_no_sticky_cookie_names_a_failover_address() -> None:
    async with backends("standby") as (standby,):
        rev = revision(
            api(
                "svc",
                "/svc",
                [dead_url(), {"url": standby.url, "kind": "failover"}],
                connection={"retries": 0, "retry_delay": {"initial": 0}},
                traffic={"sticky": {"mode": "cookie"}},
            )
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            response = await client.get(f"{gw.url}/svc/x")
            assert response.headers["x-backend"] == "standby"
            assert "set-cookie" not in response.headers
