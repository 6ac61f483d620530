"""The manager's guard for user-given URLs: every class of internal address is refused, and the
connection goes to the address that was checked (a rebinding resolver cannot redirect it)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.addresses import embedded_ipv4, is_private
from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from tests.manager.test_openapi_import import IMPORT, PETSTORE_V3
from tests.support.servers import missing_capability

PRIVATE = {
    "unspecified v4": "0.0.0.0",
    "unspecified v6": "::",
    "loopback v4": "127.0.0.1",
    "loopback v4 elsewhere in 127/8": "127.8.9.10",
    "loopback v6": "::1",
    "RFC 1918": "10.1.2.3",
    "RFC 1918 172.16/12": "172.20.0.1",
    "RFC 1918 192.168/16": "192.168.1.1",
    "shared 100.64/10": "100.64.0.1",
    "link-local v4": "169.254.1.1",
    "cloud metadata v4": "169.254.169.254",
    "link-local v6": "fe80::1",
    "link-local v6 with zone": "fe80::1%lo",
    "unique-local v6": "fd12:3456::1",
    "cloud metadata v6 (AWS)": "fd00:ec2::254",
    "site-local v6": "fec0::1",
    "multicast v4": "224.0.0.1",
    "multicast v6": "ff02::1",
    "broadcast": "255.255.255.255",
    "reserved 240/4": "240.0.0.1",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped private": "::ffff:10.0.0.1",
    "IPv4-mapped metadata": "::ffff:169.254.169.254",
    "IPv4-compatible loopback": "::127.0.0.1",
    "IPv4-compatible private": "::10.0.0.1",
    "IPv4-compatible public": "::8.8.8.8",
    "6to4 of loopback": "2002:7f00:1::1",
    "6to4 of private": "2002:a00:1::1",
    "6to4 of public": "2002:808:808::1",
    "Teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "Teredo of private client": "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    "NAT64 of private": "64:ff9b::a00:1",
}
PUBLIC = {"v4": "93.184.216.34", "v6": "2606:4700:4700::1111", "dns v4": "8.8.8.8"}


@pytest.mark.parametrize("address", PRIVATE.values(), ids=PRIVATE.keys())
def test_internal_addresses_are_private(address: str) -> None:
    assert is_private(address)


@pytest.mark.parametrize("address", PUBLIC.values(), ids=PUBLIC.keys())
def test_public_addresses_are_not(address: str) -> None:
    assert not is_private(address)


def test_embedded_ipv4_addresses_are_found() -> None:
    import ipaddress

    def v6(text: str) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(text)

    assert [str(a) for a in embedded_ipv4(v6("::ffff:10.0.0.1"))] == ["10.0.0.1"]
    assert [str(a) for a in embedded_ipv4(v6("::10.0.0.1"))] == ["10.0.0.1"]
    assert [str(a) for a in embedded_ipv4(v6("2002:a00:1::1"))] == ["10.0.0.1"]
    assert "10.0.0.1" in [str(a) for a in embedded_ipv4(v6("2001:0:4136:e378:8000:63bf:f5ff:fffe"))]
    assert embedded_ipv4(v6("::1")) == []


def test_an_opened_network_is_not_private() -> None:
    import ipaddress

    opened = [ipaddress.ip_network("10.0.0.0/8")]
    assert not is_private("10.1.2.3", opened)
    assert is_private("192.168.1.1", opened)
    assert is_private("169.254.169.254", opened)


class _Recorder(http.server.BaseHTTPRequestHandler):
    body = b""
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        self.send_response(200)
        self.send_header("Content-Type", "application/yaml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(address: str, body: bytes) -> tuple[http.server.ThreadingHTTPServer, type[_Recorder]]:
    handler = type("Handler", (_Recorder,), {"body": body, "seen": []})
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


@pytest.fixture
def two_servers() -> Iterator[tuple[Any, Any, int]]:
    """The checked server on 127.0.0.1 and an 'internal' one on 127.0.0.2, on the same port."""
    good, good_seen = _serve("127.0.0.1", PETSTORE_V3.encode())
    port = good.server_address[1]
    try:
        internal = http.server.ThreadingHTTPServer(
            ("127.0.0.2", port),
            type("Internal", (_Recorder,), {"body": b"secret: internal", "seen": []}),
        )
    except OSError:
        good.shutdown()
        good.server_close()
        missing_capability("127.0.0.2 is not usable here")
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    try:
        yield good_seen, internal.RequestHandlerClass, port
    finally:
        for server in (good, internal):
            server.shutdown()
            server.server_close()


def test_a_rebinding_resolver_cannot_redirect_the_import(
    settings: ManagerSettings, two_servers: tuple[Any, Any, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    good_seen, internal_seen, port = two_servers
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "docs.example.test":  # first answer checked, every later one internal
            return real(next(answers, "127.0.0.2"), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    opened = ManagerSettings.model_validate_json(
        json.dumps({**settings.model_dump(mode="json"), "import_allow_cidrs": ["127.0.0.1/32"]})
    )
    with TestClient(create_app(opened), raise_server_exceptions=False) as client:
        assert opened.bootstrap_file is not None
        token = json.loads(Path(opened.bootstrap_file).read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        client.post("/api/v1/projects", json={"name": "default"})
        url = f"http://docs.example.test:{port}/petstore.yaml"
        response = client.post(IMPORT, json={"name": "pets", "url": url})
        assert response.status_code == 201, response.text
        assert internal_seen.seen == []
        assert good_seen.seen == [("/petstore.yaml", f"docs.example.test:{port}")]
        # and an address outside the opened network is still refused
        refused = client.post(IMPORT, json={"name": "pets2", "url": url})
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"][0]["field"] == "body.url"
        assert internal_seen.seen == []


# the backend address policy ------------------------------------------------------------------
DENIED_BACKENDS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://169.254.1.1:8080/",
    "http://[fe80::1]:80/",
    "http://[fec0::1]/",
    "http://0.0.0.0:9000/",
]


def manager_with(settings: ManagerSettings, **changes: Any) -> TestClient:
    configured = ManagerSettings.model_validate_json(
        json.dumps({**settings.model_dump(mode="json"), **changes})
    )
    client = TestClient(create_app(configured), raise_server_exceptions=False)
    client.__enter__()
    assert configured.bootstrap_file is not None
    token = json.loads(Path(configured.bootstrap_file).read_text())["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    client.post("/api/v1/projects", json={"name": "default"})
    return client


@pytest.mark.parametrize("url", DENIED_BACKENDS)
def test_denied_backend_addresses_are_refused_on_every_write_path(
    settings: ManagerSettings, url: str
) -> None:
    client = manager_with(settings)
    try:
        api = {"name": "meta", "base_path": "/meta", "backends": [{"url": "http://10.0.0.1"}]}
        bad = {**api, "backends": [{"url": "http://10.0.0.1"}, {"url": url}]}
        created = client.post("/api/v1/projects/default/apis", json=bad)
        assert created.status_code == 422, created.text
        assert created.json()["details"][0]["field"] == "body.backends[1].url"
        assert client.post("/api/v1/projects/default/apis", json=api).status_code == 201
        patch = {"backends": bad["backends"]}
        for method, body in ((client.put, bad), (client.patch, patch)):
            changed = method("/api/v1/projects/default/apis/meta", json=body)
            assert changed.status_code == 422, changed.text
            assert changed.json()["details"][0]["field"] == "body.backends[1].url"
        for dry_run in ("true", "false"):
            applied = client.post(
                "/api/v1/declarative/apply", params={"dry_run": dry_run}, json={"apis": [bad]}
            )
            assert applied.status_code == 422, applied.text
            assert applied.json()["details"][0]["field"] == "body.apis[0].backends[1].url"
        imported = client.post(
            IMPORT, json={"name": "pets", "document": PETSTORE_V3, "backends": [{"url": url}]}
        )
        assert imported.status_code == 422, imported.text
        assert imported.json()["details"][0]["field"] == "body.backends[0].url"
        stored = client.get("/api/v1/projects/default/apis/meta").json()
        assert (
            stored["backends"] == [{"url": "http://10.0.0.1"}]
            or stored["backends"][0]["url"] == "http://10.0.0.1"
        )
        assert len(stored["backends"]) == 1
    finally:
        client.__exit__(None, None, None)


def test_the_managers_own_address_is_refused_and_an_allow_list_opens(
    settings: ManagerSettings,
) -> None:
    client = manager_with(settings, host="0.0.0.0", port=8123)
    try:
        for url in ("http://127.0.0.1:8123/", "http://localhost:8123/", "http://[::1]:8123/"):
            api = {"name": "own", "base_path": "/own", "backends": [{"url": url}]}
            refused = client.post("/api/v1/projects/default/apis", json=api)
            assert refused.status_code == 422, refused.text
            assert "manager's own address" in refused.json()["message"]
        other_port = {"name": "ok", "base_path": "/ok", "backends": [{"url": "http://127.0.0.1:9"}]}
        assert client.post("/api/v1/projects/default/apis", json=other_port).status_code == 201
    finally:
        client.__exit__(None, None, None)
    opened = manager_with(settings, backend_allow_cidrs=["169.254.169.254/32"])
    try:
        meta = {"name": "meta", "base_path": "/meta", "backends": [{"url": DENIED_BACKENDS[0]}]}
        assert opened.post("/api/v1/projects/default/apis", json=meta).status_code == 201
        still = {"name": "ll", "base_path": "/ll", "backends": [{"url": "http://169.254.1.1/"}]}
        assert opened.post("/api/v1/projects/default/apis", json=still).status_code == 422
    finally:
        opened.__exit__(None, None, None)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # 127.0.0.1 as one number
        "0x7f.1",
        "127.1",
        "localhost.",
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[::1]",
        "[0:0:0:0:0:ffff:7f00:1]",
        "0.0.0.0",
    ],
)
def test_every_spelling_of_an_internal_host_is_refused_by_default(
    settings: ManagerSettings, two_servers: tuple[Any, Any, int], host: str
) -> None:
    good_seen, internal_seen, port = two_servers
    client = manager_with(settings)
    try:
        url = f"http://{host}:{port}/petstore.yaml"
        response = client.post(IMPORT, json={"name": "pets", "url": url})
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["field"] == "body.url"
        assert good_seen.seen == []
        assert internal_seen.seen == []
    finally:
        client.__exit__(None, None, None)


def test_api_call_urls_follow_the_backend_address_policy(settings: ManagerSettings) -> None:
    # an api_call policy is a backend by another name: the same rule on every write path
    call = {"name": "steal", "type": "api_call", "config": {"url": DENIED_BACKENDS[0]}}
    api = {"name": "calls", "base_path": "/calls", "backends": [{"url": "http://10.0.0.1"}]}
    endpoint = {"path": "/x", "methods": ["GET"], "policies": {"response": [call]}}
    client = manager_with(settings)
    try:
        created = client.post(
            "/api/v1/projects/default/apis", json={**api, "endpoints": [endpoint]}
        )
        assert created.status_code == 422, created.text
        field = created.json()["details"][0]["field"]
        assert field == "body.endpoints[0].policies.response[0].config.url"
        assert client.post("/api/v1/projects/default/apis", json=api).status_code == 201
        added = client.post("/api/v1/projects/default/apis/calls/policies/request", json=call)
        assert added.status_code == 422, added.text
        assert added.json()["details"][0]["field"].endswith("config.url")
        shared = client.post("/api/v1/global-policies", json=call)
        assert shared.status_code == 422, shared.text
        assert shared.json()["details"][0]["field"] == "body.config.url"
        applied = client.post(
            "/api/v1/declarative/apply",
            params={"dry_run": "true"},
            json={"global_policies": [call]},
        )
        assert applied.status_code == 422, applied.text
        fine = {**call, "name": "lookup", "config": {"url": "http://10.0.0.2/a/${header.X-Id}"}}
        assert client.post("/api/v1/global-policies", json=fine).status_code == 201
    finally:
        client.__exit__(None, None, None)
    opened = manager_with(settings, backend_allow_cidrs=["169.254.169.254/32"])
    try:
        assert opened.post("/api/v1/global-policies", json=call).status_code == 201
    finally:
        opened.__exit__(None, None, None)
