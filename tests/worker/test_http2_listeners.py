"""HTTP/2 on the worker's listeners: off by default, on in the single-host profile (`make up`),
ALPN h2 on the TLS listener and h2c on the plain one when enabled."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import trustme

from portway.config.platform_file import platform_from_mapping
from portway.http import Request, Response
from portway.local.profile import LocalProfile
from portway.worker.server import start_listeners
from portway.worker.settings import TlsSettings, WorkerSettings


async def version(request: Request) -> Response:
    return Response(200, [], request.http_version.encode())


async def test_the_single_host_profile_serves_h2c(tmp_path: Path) -> None:
    profile = LocalProfile(data_dir=tmp_path)
    platform = platform_from_mapping(profile.platform("local-worker"), tmp_path, env={})
    worker = platform.worker(profile.environment)
    assert worker.http2.enabled
    settings = worker.model_copy(update={"host": "127.0.0.1", "port": 0})
    listeners = await start_listeners(version, settings)
    try:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f"http://127.0.0.1:{listeners.port()}/")
        async with httpx.AsyncClient() as client:
            r1 = await client.get(f"http://127.0.0.1:{listeners.port()}/")
    finally:
        await listeners.close(1)
    assert (r.http_version, r.text) == ("HTTP/2", "2")
    assert (r1.http_version, r1.text) == ("HTTP/1.1", "1.1")


async def test_http2_is_off_by_default() -> None:
    settings = WorkerSettings(host="127.0.0.1", port=0, processes=1)
    assert not settings.http2.enabled
    listeners = await start_listeners(version, settings)
    try:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            try:
                await client.get(f"http://127.0.0.1:{listeners.port()}/")
            except httpx.HTTPError as exc:
                refused: Exception | None = exc
            else:
                refused = None
    finally:
        await listeners.close(1)
    assert refused is not None  # the preface is not HTTP/1.1: 400 and closed


async def test_alpn_h2_on_the_worker_tls_listener(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "cert.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    settings = WorkerSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": None,
            "https_port": 0,
            "processes": 1,
            "tls": TlsSettings(cert_file=str(pem)).model_dump(),
            "http2": {"enabled": True},
        }
    )
    listeners = await start_listeners(version, settings)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        url = f"https://localhost:{listeners.port('https')}/"
        async with httpx.AsyncClient(http2=True, verify=context) as client:
            r = await client.get(url)
    finally:
        await listeners.close(1)
    assert (r.http_version, r.text) == ("HTTP/2", "2")
