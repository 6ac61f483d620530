"""Request body caps of the manager, on a real uvicorn server on a loopback port through raw
sockets: an over-cap body is answered 413 (standard error JSON, correlation id) before it is read
and before authentication; under-cap bodies, chunked or not, still reach their routes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from portway.cli import build_parser, manager_settings
from portway.errors import ConfigError
from portway.manager.settings import ManagerSettings
from tests.manager.live_manager import LiveManager, live_manager
from tests.manager.test_openapi_import import PETSTORE_V3

MiB = 1024 * 1024
PATIENCE = 20.0  # bounds every wait for an answer; never asserted on
API_ROUTE = "/api/v1/projects"
IMPORT_ROUTE = "/api/v1/projects/default/apis/import"
APPLY_ROUTE = "/api/v1/declarative/apply"
CLUSTER_ROUTE = "/_portway/cluster/workers/w1/status"


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[LiveManager]:
    with live_manager(tmp_path) as running:
        yield running


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, head: str, body_part: bytes) -> Answer:
    """Send a request head and part of its body, send nothing more, read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(head.encode("latin-1") + body_part)
        raw = b""
        while b"\r\n\r\n" not in raw:
            piece = sock.recv(65536)
            assert piece, f"the manager closed without an answer: {raw!r}"
            raw += piece
        head_bytes, rest = raw.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(rest) < length:
            piece = sock.recv(65536)
            assert piece, "the answer was cut short"
            rest += piece
        return Answer(int(lines[0].split()[1]), headers, rest)


def post_head(path: str, length: int, extra: str = "", method: str = "POST") -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    )


def chunked(data: bytes, size: int = 64 * 1024) -> bytes:
    return b"".join(
        b"%x\r\n%b\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    )


def assert_too_large(answer: Answer, cap: int) -> None:
    assert answer.status == 413, answer
    problem = answer.json()
    assert problem["error"] == "payload_too_large"
    assert problem["message"] == f"the request body is larger than {cap} bytes"
    assert problem["details"] == [{"field": "body", "message": problem["message"]}]
    assert problem["correlation_id"]
    assert answer.headers["x-correlation-id"] == problem["correlation_id"]
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("path", "cap"),
    [
        (API_ROUTE, MiB),
        ("/api/v1/no-such-route", MiB),
        (IMPORT_ROUTE, 16 * MiB),
        (APPLY_ROUTE, 16 * MiB),
        (CLUSTER_ROUTE, MiB),
    ],
)
def test_an_anonymous_huge_declared_body_is_413_unread(
    manager: LiveManager, method: str, path: str, cap: int
) -> None:
    # 300 MiB announced, 64 KiB sent: the answer cannot wait for the rest
    answer = exchange(manager.port, post_head(path, 300 * MiB, method=method), b"{" * 65536)
    assert_too_large(answer, cap)


def test_the_413_keeps_the_callers_correlation_id(manager: LiveManager) -> None:
    head = post_head(API_ROUTE, 300 * MiB, "X-Correlation-ID: trace-413-abc\r\n")
    answer = exchange(manager.port, head, b"")
    assert_too_large(answer, MiB)
    assert answer.json()["correlation_id"] == "trace-413-abc"


def test_an_authenticated_caller_gets_413_too(manager: LiveManager) -> None:
    head = post_head(API_ROUTE, MiB + 1, f"Authorization: Bearer {manager.token}\r\n")
    assert_too_large(exchange(manager.port, head, b""), MiB)


@pytest.mark.parametrize(("path", "cap"), [(API_ROUTE, MiB), (IMPORT_ROUTE, 16 * MiB)])
def test_a_chunked_body_is_413_as_soon_as_it_passes_the_cap(
    manager: LiveManager, path: str, cap: int
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    # one byte past the cap, and the body never ends: only counting can answer this
    assert_too_large(exchange(manager.port, head, chunked(b" " * (cap + 1))), cap)


def test_a_body_at_the_cap_is_not_refused_for_its_size(manager: LiveManager) -> None:
    body = b'{"name": "x"}'.ljust(MiB, b" ")
    answer = exchange(manager.port, post_head(API_ROUTE, len(body)), body)
    assert answer.status == 401, answer  # read whole, then the route's authentication


def test_an_anonymous_import_over_the_api_cap_is_judged_by_the_import_cap(
    manager: LiveManager,
) -> None:
    body = b'{"name": "x"}'.ljust(2 * MiB, b" ")
    answer = exchange(manager.port, post_head(IMPORT_ROUTE, len(body)), body)
    assert answer.status == 401, answer


def big_petstore() -> str:
    """The petstore document padded past the JSON API cap with a YAML comment."""
    return PETSTORE_V3 + "\n# " + "p" * (2 * MiB) + "\n"


def test_an_authenticated_import_under_its_cap_still_works(manager: LiveManager) -> None:
    auth = {"Authorization": f"Bearer {manager.token}"}
    with httpx.Client(base_url=manager.url, headers=auth, timeout=PATIENCE) as client:
        assert client.post(API_ROUTE, json={"name": "default"}).status_code == 201
        made = client.post(IMPORT_ROUTE, json={"name": "pets", "document": big_petstore()})
        assert made.status_code == 201, made.text
        assert client.get("/api/v1/projects/default/apis/pets").status_code == 200


def test_an_authenticated_chunked_body_under_its_cap_still_works(manager: LiveManager) -> None:
    payload = json.dumps({"name": "default"}).encode()
    head = (
        f"POST {API_ROUTE} HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {manager.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer = exchange(manager.port, head, chunked(payload, 5) + b"0\r\n\r\n")
    assert answer.status == 201, answer
    assert answer.json()["name"] == "default"


def test_the_import_cap_must_hold_an_imported_document() -> None:
    with pytest.raises(ValidationError, match="max_import_body_bytes must be at least"):
        ManagerSettings(import_max_bytes=8 * MiB, max_import_body_bytes=4 * MiB)


def test_portway_manager_flags_set_the_caps(tmp_path: Path) -> None:
    base = ["manager", "--data-dir", str(tmp_path)]
    defaults = manager_settings(build_parser().parse_args(base))
    assert (
        defaults.max_body_bytes,
        defaults.max_import_body_bytes,
        defaults.max_cluster_body_bytes,
    ) == (MiB, 16 * MiB, MiB)
    given = manager_settings(
        build_parser().parse_args(
            [
                *base,
                "--max-body-bytes",
                "2048",
                "--max-import-body-bytes",
                str(64 * MiB),
                "--max-cluster-body-bytes",
                "4096",
            ]
        )
    )
    assert (given.max_body_bytes, given.max_import_body_bytes, given.max_cluster_body_bytes) == (
        2048,
        64 * MiB,
        4096,
    )
    with pytest.raises(ConfigError, match="max_body_bytes"):
        manager_settings(build_parser().parse_args([*base, "--max-body-bytes", "10"]))


def test_the_import_cap_is_a_flag_and_raises_the_body_cap(tmp_path: Path) -> None:
    base = ["manager", "--data-dir", str(tmp_path), "--import-max-bytes", str(20 * MiB)]
    raised = manager_settings(build_parser().parse_args(base))
    assert (raised.import_max_bytes, raised.max_import_body_bytes) == (20 * MiB, 40 * MiB)
    both = manager_settings(
        build_parser().parse_args([*base, "--max-import-body-bytes", str(24 * MiB)])
    )
    assert (both.import_max_bytes, both.max_import_body_bytes) == (20 * MiB, 24 * MiB)
    with pytest.raises(ConfigError, match="max_import_body_bytes must be at least"):
        manager_settings(build_parser().parse_args([*base, "--max-import-body-bytes", str(MiB)]))
