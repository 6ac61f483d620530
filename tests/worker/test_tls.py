"""TLS: termination on the worker (with a generated CA), the HTTP->HTTPS redirect listener, mTLS
peer certificates, and HTTPS to backends with verification and SNI."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from portway.http import Request, Response, serve, server_tls_context
from portway.worker.proxy import GatewayHandler
from portway.worker.server import start_listeners
from portway.worker.settings import TlsSettings, WorkerSettings
from tests.worker.support import api, backends, gateway, revision


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@example.test")
    paths = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths["cert"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {k: str(v) for k, v in paths.items()}


async def test_tls_termination_and_redirect(files: dict[str, str]) -> None:
    async with backends("b") as (b,):
        settings = WorkerSettings(
            host="127.0.0.1",
            port=None,
            https_port=0,
            redirect_port=0,
            tls=TlsSettings(cert_file=files["cert"]),
        )
        handler = GatewayHandler()
        listeners = await start_listeners(handler, settings)
        try:
            from portway.worker.runtime import compile_runtime

            runtime = compile_runtime(revision(api("svc", "/", [b.url])), settings)
            await runtime.start()
            handler.swap(runtime)
            https = listeners.port("https")
            context = ssl.create_default_context(cafile=files["ca"])
            async with httpx.AsyncClient(verify=context) as client:
                r = await client.get(f"https://localhost:{https}/x?y=1")
                assert r.status_code == 200
                assert r.json()["target"] == "/x?y=1"
                headers = dict(r.json()["headers"])
                assert headers["x-forwarded-proto"] == "https"
                redirect = await client.get(
                    f"http://localhost:{listeners.port('redirect')}/x?y=1", follow_redirects=False
                )
            assert redirect.status_code == 308
            assert redirect.headers["location"] == f"https://localhost:{https}/x?y=1"
        finally:
            await listeners.close(1)
            await handler.close(1)


async def test_mtls_peer_certificate_reaches_the_handler(files: dict[str, str]) -> None:
    async def whoami(request: Request) -> Response:
        cert = request.tls_peer_cert or {}
        subject = dict(item[0] for item in cert.get("subject", ()))
        alt = [v for _, v in cert.get("subjectAltName", ())]
        return Response(200, [], repr((subject, alt)).encode())

    context = server_tls_context(
        files["cert"], client_ca_file=files["ca"], require_client_cert=True
    )
    server = await serve(whoami, "127.0.0.1", 0, ssl=context)
    try:
        client_ctx = ssl.create_default_context(cafile=files["ca"])
        client_ctx.load_cert_chain(files["client"])
        async with httpx.AsyncClient(verify=client_ctx) as client:
            r = await client.get(f"https://localhost:{server.port}/")
        assert "client@example.test" in r.text
        bare = ssl.create_default_context(cafile=files["ca"])
        async with httpx.AsyncClient(verify=bare) as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"https://localhost:{server.port}/")
    finally:
        await server.close(1)


async def test_https_backend_verified_with_configured_ca(files: dict[str, str]) -> None:
    async def backend(request: Request) -> Response:
        return Response(200, [], b"secure")

    upstream = await serve(backend, "127.0.0.1", 0, ssl=server_tls_context(files["cert"]))
    try:
        url = f"https://localhost:{upstream.port}"
        verified = revision(api("svc", "/", [url], connection={"ca_bundle": files["ca"]}))
        unknown_ca = revision(api("svc", "/", [url], connection={"retries": 0}), number=2)
        unverified = revision(
            api("svc", "/", [url], connection={"tls_verify": False, "retries": 0}), number=3
        )
        async with gateway(verified) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/")
            assert (r.status_code, r.text) == (200, "secure")
            await gw.deploy(unknown_ca)
            r = await client.get(f"{gw.url}/")
            assert r.status_code == 502
            await gw.deploy(unverified)
            r = await client.get(f"{gw.url}/")
            assert r.status_code == 200
    finally:
        await upstream.close(1)
