"""HeaderMap over received bytes (``from_wire``) behaves exactly as one built from text."""

from __future__ import annotations

import random

from portway.policies.contract import HeaderMap

WIRE = [
    (b"host", b"example.test"),
    (b"x-api-key", b"secret"),
    (b"accept", b"*/*"),
    (b"x-multi", b"one"),
    (b"x-latin", b"caf\xe9"),
    (b"x-multi", b"two"),
]
NAMES = ["Host", "X-Api-Key", "x-multi", "X-MULTI", "X-Latin", "X-Consumer", "Accept", "X-Ünïcode"]


def _text(wire: list[tuple[bytes, bytes]]) -> HeaderMap:
    return HeaderMap((k.decode("latin-1"), v.decode("latin-1")) for k, v in wire)


def _same(a: HeaderMap, b: HeaderMap) -> None:
    assert a.items() == b.items()
    assert len(a) == len(b)
    for name in NAMES:
        assert a.get(name) == b.get(name), name
        assert a.get_all(name) == b.get_all(name), name
        assert (name in a) == (name in b), name


def test_every_operation_matches_the_text_map() -> None:
    rng = random.Random(15)
    for _ in range(200):
        wired, text = HeaderMap.from_wire(WIRE), _text(WIRE)
        _same(wired, text)
        for _ in range(6):
            name = rng.choice(NAMES)
            op = rng.choice(("set", "add", "remove"))
            if op == "remove":
                wired.remove(name)
                text.remove(name)
            else:
                value = rng.choice(["v", "caf\xe9", ""])
                getattr(wired, op)(name, value)
                getattr(text, op)(name, value)
            _same(wired, text)
        expected = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in text.items()]
        assert wired.wire() == expected


def test_untouched_headers_come_back_as_received() -> None:
    wired = HeaderMap.from_wire(WIRE)
    assert wired.get("X-Api-Key") == "secret"
    wired.remove("X-Consumer")  # absent: nothing changes
    assert wired.wire() == WIRE
    assert wired.added() == []
    wired.add("X-RateLimit-Limit", "10")
    assert wired.wire() == [*WIRE, (b"x-ratelimit-limit", b"10")]
    assert wired.added() == [("X-RateLimit-Limit", "10")]


def test_the_received_list_is_not_changed() -> None:
    received = list(WIRE)
    wired = HeaderMap.from_wire(received)
    wired.remove("x-api-key")
    wired.set("Host", "other")
    assert received == WIRE
    assert [k for k, _ in wired.wire()] == [b"accept", b"x-multi", b"x-latin", b"x-multi", b"host"]
