"""The cluster protocol under attack: a real manager and real workers over real sockets, with a
real man-in-the-middle HTTP proxy between worker and manager, and real TLS with a pinned CA."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from portway.cluster.signing import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    load_or_create_secret,
    read_secret,
    sign,
    verify_answer,
)
from tests.e2e.conftest import Platform, launch
from tests.support.processes import free_port, portway, wait_until

_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MitmProxy:
    """Forwards the worker's calls to the manager; ``attack`` changes what comes back:
    ``tamper`` edits a revision's body, ``replay`` answers a revision pull with the first one it
    recorded, ``strip`` removes the answer's signature."""

    def __init__(self, upstream: str) -> None:
        self.attack: str | None = None
        self.attacks = 0
        self.calls: list[Seen] = []
        self.revision_answers: list[Answer] = []
        proxy = self
        client = httpx.Client(base_url=upstream, trust_env=False, timeout=30.0)
        self._client = client

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                proxy.calls.append(Seen(self.command, self.path, headers, body))
                response = client.request(self.command, self.path, content=body, headers=headers)
                answer = Answer(
                    response.status_code,
                    [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP],
                    response.content,
                )
                answer = proxy.meddle(self.path, answer)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def meddle(self, path: str, answer: Answer) -> Answer:
        pull = "/revisions/" in path
        if pull and self.attack is None and answer.status == 200:
            self.revision_answers.append(answer)
        if self.attack == "tamper" and pull and b'"/v2"' in answer.body:
            self.attacks += 1
            return Answer(answer.status, answer.headers, answer.body.replace(b'"/v2"', b'"/x"'))
        if self.attack == "replay" and pull and self.revision_answers:
            self.attacks += 1
            return self.revision_answers[0]
        if self.attack == "strip":
            self.attacks += 1
            kept = [(k, v) for k, v in answer.headers if k.lower() != SIGNATURE_HEADER.lower()]
            return Answer(answer.status, kept, answer.body)
        return answer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


@pytest.fixture
def mitm(platform: Platform) -> Iterator[MitmProxy]:
    proxy = MitmProxy(platform.manager_url)
    yield proxy
    proxy.close()


def demo_api(plat: Platform, **extra: Any) -> dict[str, Any]:
    return {"name": "demo", "base_path": "/demo", "backends": [{"url": plat.backend_url}]} | extra


def get(url: str, verify: ssl.SSLContext | bool = True) -> httpx.Response:
    return httpx.get(url, timeout=10.0, trust_env=False, verify=verify)


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("tamper", "signature does not match"),
        ("replay", "request id differs"),
        ("strip", "no cluster signature"),
    ],
)
def test_a_man_in_the_middle_cannot_change_what_the_worker_installs(
    platform: Platform, mitm: MitmProxy, attack: str, reason: str
) -> None:
    worker, port = platform.start_worker("w1", manager_url=mitm.url)
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    first = platform.deploy("demo")
    assert first["results"][0]["success"] is True

    mitm.attack = attack
    platform.call("PUT", "/projects/default/apis/demo", demo_api(platform, base_path="/v2"))
    second = platform.deploy("demo")
    [result] = second["results"]
    assert result["success"] is False
    assert result["served_revision"] == first["env_revision"]
    assert reason in result["error"]
    assert mitm.attacks > 0
    assert "refused the manager's answer" in worker.output()
    assert f"still serving revision {first['env_revision']}" in worker.output()
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/demo/echo").status_code == 200  # the previous revision still serves
    assert get(base + "/v2/echo").status_code == 404
    # alive and serving, but not what the manager asked for: not ready (Kubernetes readiness)
    assert get(base + "/_portway/health").status_code == 200
    not_ready = get(base + "/_portway/ready")
    assert (not_ready.status_code, not_ready.text) == (503, "CONVERGING\n")

    mitm.attack = None  # the honest channel back: the poll converges to the new revision
    wait_until(lambda: get(base + "/v2/echo").status_code == 200, "revision 2", proc=worker)
    wait_until(lambda: get(base + "/_portway/ready").status_code == 200, "ready", proc=worker)


def test_a_replayed_call_is_refused_by_the_manager_and_by_the_worker(
    platform: Platform, mitm: MitmProxy
) -> None:
    _, port = platform.start_worker("w1", manager_url=mitm.url)
    report = next(call for call in mitm.calls if call.method == "POST")
    replayed = httpx.post(
        platform.manager_url + report.path,
        content=report.body,
        headers=report.headers,
        trust_env=False,
    )
    assert replayed.status_code == 401
    assert replayed.json()["error"] == "replayed"

    secret = read_secret(platform.secret_file)
    for method, path, body in [
        ("GET", "/_portway/status", b""),
        ("POST", "/_portway/deploy", b'{"environment": "dev", "revision": 0}'),
    ]:
        headers = sign(secret, method, path, body)
        url = f"http://127.0.0.1:{port}{path}"
        first = httpx.request(method, url, content=body, headers=headers, trust_env=False)
        assert first.status_code == 200, first.text
        verify_answer(
            secret,
            headers[REQUEST_ID_HEADER],
            200,
            first.content,
            first.headers,
            revision=0 if method == "POST" else None,
        )
        again = httpx.request(method, url, content=body, headers=headers, trust_env=False)
        assert again.status_code == 401
        assert again.json()["error"] == "replayed"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def pem_files(ca: trustme.CA, directory: Path, name: str) -> tuple[Path, Path]:
    """``(ca bundle, cert+key)`` for 127.0.0.1 signed by ``ca``."""
    directory.mkdir(parents=True, exist_ok=True)
    bundle, server = directory / f"{name}-ca.pem", directory / f"{name}-server.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(server)
    )
    return bundle, server


def test_https_with_a_pinned_ca_end_to_end(ca: trustme.CA, tmp_path: Path) -> None:
    bundle, server = pem_files(ca, tmp_path / "pki", "good")
    rogue_bundle, rogue_server = pem_files(trustme.CA(), tmp_path / "pki", "rogue")
    manager_tls = ["--tls-cert", str(server), "--cluster-ca", str(bundle)]
    platforms = launch(tmp_path, manager_tls, ca_file=bundle)
    plat = next(platforms)
    try:
        assert plat.manager_url.startswith("https://")

        def tls_worker(worker_id: str, trusts: Path, serves: Path, wait: bool = True) -> Any:
            https_port = free_port()
            proc, _ = plat.start_worker(
                worker_id,
                advertise_url=f"https://127.0.0.1:{https_port}",
                extra=[
                    "--cluster-ca",
                    str(trusts),
                    "--tls-cert",
                    str(serves),
                    "--https-port",
                    str(https_port),
                ],
                wait=wait,
            )
            return proc, https_port

        _, good_port = tls_worker("good", bundle, server)
        tls_worker("rogue-listener", bundle, rogue_server)
        distrustful, _ = tls_worker("wrong-ca", rogue_bundle, server, wait=False)

        plat.call("POST", "/projects/default/apis", demo_api(plat), expect=201)
        deployment = plat.deploy("demo")
        results = {r["worker"]: r for r in deployment["results"]}
        assert results["good"]["success"] is True
        assert results["rogue-listener"]["success"] is False  # the manager pins the CA too
        assert "CERTIFICATE_VERIFY_FAILED" in results["rogue-listener"]["error"]
        assert "wrong-ca" not in results  # it never got through to the manager

        echoed = get(f"https://127.0.0.1:{good_port}/demo/echo", plat.verify())
        assert echoed.status_code == 200
        assert echoed.json()["path"] == "/echo"
        wait_until(
            lambda: "CERTIFICATE_VERIFY_FAILED" in distrustful.output(),
            "the worker refusing the manager's certificate",
            proc=distrustful,
        )
        assert plat.worker_state("wrong-ca") is None
    finally:
        platforms.close()


@pytest.mark.parametrize(
    "manager",
    ["http://192.0.2.10:8080", "http://localhost.example.com:8080", "http://127.0.0.1.nip.io"],
)
def test_plain_http_to_a_remote_manager_needs_insecure_cluster(
    tmp_path: Path, manager: str
) -> None:
    load_or_create_secret(tmp_path / "cluster.secret")
    done = subprocess.run(
        portway(
            "worker",
            "--environment",
            "dev",
            "--manager",
            manager,
            "--secret-file",
            str(tmp_path / "cluster.secret"),
            "--state-dir",
            str(tmp_path / "state"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "refusing plain http://" in done.stderr
    assert "--insecure-cluster" in done.stderr
