"""Traffic configuration through a real manager and real workers: ``${env.NAME}`` variables
expanded per environment (a secret one reaches the backend and no answer, audit record or log),
several base paths per API, an endpoint's own timeout and retries, a minimum body size."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.support.processes import Process, free_port, http_ok, portway, wait_until

SECRET_DEV = "dev-secret-key-81c0f5"
SECRET_PROD = "prod-secret-key-e94d27"
VIEWER_PASSWORD = "viewer password 5678"


def get(port: int, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=20.0, trust_env=False, **kw)


def serves(port: int, path: str, status: int = 200) -> None:
    wait_until(lambda: get(port, path).status_code == status, f"{path} answers {status}")


def orders_api() -> dict[str, Any]:
    return {
        "name": "orders",
        "base_path": "/orders",
        "routes": [
            {"base_path": "/legacy/orders"},
            {"base_path": "/shop/{tenant}/orders", "hosts": ["shop.example"]},
        ],
        "backends": [{"url": "${env.BACKEND}/api"}],
        "policies": {
            "request": [
                {
                    "name": "key",
                    "type": "rewrite",
                    "config": {"request_headers": {"set": {"x-backend-key": "${env.API_KEY}"}}},
                }
            ]
        },
    }


def viewer_token(platform: Platform) -> str:
    platform.call(
        "POST",
        "/users",
        {"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD},
        expect=201,
    )
    with httpx.Client(
        base_url=platform.manager_url + "/api/v1", timeout=30.0, trust_env=False
    ) as client:
        login = client.post("/auth/login", json={"username": "vera", "password": VIEWER_PASSWORD})
        assert login.status_code == 200, login.text
        made = client.post(
            "/tokens",
            json={"name": "e2e", "current_password": VIEWER_PASSWORD},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        token: str = made.json()["token"]
        return token


def test_variables_resolve_per_environment_and_a_secret_stays_hidden(
    platform: Platform,
) -> None:
    prod_port = free_port()
    prod_backend = Process(
        "backend-prod", portway("demo-backend", "--port", str(prod_port)), platform.root
    )
    platform.processes.append(prod_backend)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{prod_port}/"), "prod backend", proc=prod_backend)
    platform.call("POST", "/environments", {"name": "prod", "type": "prod"}, expect=201)
    _, dev = platform.start_worker("w-dev", environment="dev")
    _, prod = platform.start_worker("w-prod", environment="prod")
    platform.call("POST", "/projects/default/apis", orders_api(), expect=201)
    for env, backend, secret in (
        ("dev", platform.backend_url, SECRET_DEV),
        ("prod", f"http://127.0.0.1:{prod_port}", SECRET_PROD),
    ):
        platform.call(
            "PUT", f"/environments/{env}/variables/BACKEND", {"value": backend}, expect=200
        )
        body = {"value": secret, "secret": True}
        platform.call("PUT", f"/environments/{env}/variables/API_KEY", body, expect=200)
        platform.deploy("orders", environment=env)
    serves(dev, "/orders/items")
    serves(prod, "/orders/items")
    for port, backend_port, secret in (
        (dev, platform.backend_port, SECRET_DEV),
        (prod, prod_port, SECRET_PROD),
    ):
        echoed = get(port, "/orders/items?x=1").json()
        assert echoed["headers"]["host"] == f"127.0.0.1:{backend_port}"
        assert echoed["path"] == "/api/items"
        assert echoed["headers"]["x-backend-key"] == secret
        # each base path of the API routes, forwarded without the one it came in on
        assert get(port, "/legacy/orders/items").json()["path"] == "/api/items"
        shop = get(port, "/shop/acme/orders/items", headers={"Host": "shop.example"})
        assert shop.json()["path"] == "/api/items"
        assert get(port, "/shop/acme/orders/items").status_code == 404  # another host
        assert get(port, "/legacy/other").status_code == 404

    # an undefined variable at deploy: 422 naming the API, the field and the variable
    platform.call("POST", "/environments", {"name": "stage", "type": "staging"}, expect=201)
    with platform.api() as client:
        refused = client.post("/environments/stage/deployments", json={"api": "orders"})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["details"][0]["field"] == "apis[default/orders].backends[0].url"
    assert (
        "API default/orders in environment stage: variable BACKEND is not defined"
        in (problem["message"])
    )

    # no read of the management API shows a secret value, to an admin or a viewer
    viewer = viewer_token(platform)
    reads = [
        "/environments/prod/variables",
        "/environments/prod/variables/API_KEY",
        "/environments/dev/variables/API_KEY",
        "/environments/prod/revision",
        "/environments/prod/revisions/1",
        "/environments/dev/revision",
        "/environments/prod/deployments",
        "/projects/default/apis/orders",
        "/projects/default/apis/orders/status",
        "/declarative/export",
        "/audit",
        "/workers",
    ]
    for token in (platform.token, viewer):
        for path in reads:
            answer = httpx.get(
                f"{platform.manager_url}/api/v1{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
                trust_env=False,
            )
            if path == "/audit" and token == viewer:
                assert answer.status_code == 403
                continue
            assert answer.status_code == 200, (path, answer.text)
            assert SECRET_DEV not in answer.text, path
            assert SECRET_PROD not in answer.text, path
    # nor a log line of the manager or the workers
    for proc in platform.processes:
        assert SECRET_DEV not in proc.output(), proc.name
        assert SECRET_PROD not in proc.output(), proc.name


class SlowBackend(http.server.ThreadingHTTPServer):
    """Answers after ``delay`` seconds and counts the requests per path."""

    delay = 1.5

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _SlowHandler)


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    server: SlowBackend

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
        time.sleep(self.server.delay)
        body = b'{"slow": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the worker gave up waiting

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_backend() -> Iterator[SlowBackend]:
    server = SlowBackend()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_timeouts_and_retries_and_a_minimum_body(
    platform: Platform, slow_backend: SlowBackend
) -> None:
    _, port = platform.start_worker("w1")
    api = {
        "name": "slow",
        "base_path": "/slow",
        "backends": [{"url": f"http://127.0.0.1:{slow_backend.server_address[1]}"}],
        "connection": {"total_timeout": 30, "read_timeout": 30, "retries": 2},
        "endpoints": [
            {"path": "/fast", "connection": {"total_timeout": 0.3, "retries": 0}},
            {"path": "/twice", "connection": {"total_timeout": 0.3, "retries": 1}},
            {
                "path": "/upload",
                "methods": ["POST"],
                "policies": {
                    "request": [
                        {
                            "name": "body-size",
                            "type": "size_limit",
                            "config": {"min_request_bytes": 5, "max_request_bytes": 20},
                        }
                    ]
                },
            },
        ],
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    platform.deploy("slow")
    wait_until(lambda: get(port, "/slow/plain").status_code == 200, "slow API deployed")
    # the API's own timeout waits for the slow backend; the endpoint's does not
    assert get(port, "/slow/plain").status_code == 200
    fast = get(port, "/slow/fast")
    assert fast.status_code == 504, fast.text
    assert fast.json()["error"] == "gateway_timeout"
    assert fast.json()["correlation_id"]
    twice = get(port, "/slow/twice")
    assert twice.status_code == 504
    wait_until(lambda: slow_backend.hits["/twice"] == 2, "the second try reached the backend")
    assert slow_backend.hits["/fast"] == 1  # retries 0 on the endpoint, 2 on the API

    # a body below the minimum: 400 naming the rule; within the bounds: forwarded
    def post(body: bytes, **headers: str) -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{port}/slow/upload",
            content=body,
            headers=headers,
            timeout=20.0,
            trust_env=False,
        )

    for body in (b"", b"1234"):
        small = post(body)
        assert small.status_code == 400, small.text
        assert small.json()["error"] == "request_too_small"
        assert "min_request_bytes" in small.json()["message"]
    chunked = httpx.post(
        f"http://127.0.0.1:{port}/slow/upload",
        content=iter([b"12", b"3"]),
        timeout=20.0,
        trust_env=False,
    )
    assert chunked.status_code == 400, chunked.text
    assert chunked.json()["error"] == "request_too_small"
    assert post(b"x" * 21).status_code == 413
    assert post(b"123456").status_code == 200
    assert slow_backend.hits["/upload"] == 1
