"""The manager compiles what a worker compiles, TLS contexts of HTTPS backends included: a revision
with a CA bundle that cannot be loaded is refused before it is stored or published, and the error
names the field and the user's path without the operating system's detail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, EnvironmentRevision
from portway.errors import DeploymentError
from portway.worker.runtime import compile_runtime
from tests.support.servers import missing_capability

SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")


def https_api(name: str, ca_bundle: str | None, url: str = "https://127.0.0.1:9") -> dict[str, Any]:
    return {
        "name": name,
        "base_path": f"/{name}",
        "backends": [{"url": url}],
        "connection": {"ca_bundle": ca_bundle},
    }


def bad_bundles(tmp_path: Path) -> list[str]:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    unreadable_dir = tmp_path / "a-folder"
    unreadable_dir.mkdir()
    return [str(tmp_path / "missing" / "ca.pem"), str(junk), str(unreadable_dir)]


@pytest.fixture
def dev(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    return admin


def test_a_ca_bundle_that_cannot_be_loaded_is_never_published(
    dev: TestClient, tmp_path: Path
) -> None:
    fine = dev.post("/api/v1/projects/default/apis", json=https_api("fine", None))
    assert fine.status_code == 201, fine.text
    for index, path in enumerate(bad_bundles(tmp_path)):
        name = f"broken{index}"
        created = dev.post("/api/v1/projects/default/apis", json=https_api(name, path))
        assert created.status_code == 201, created.text
        refused = dev.post("/api/v1/environments/dev/deployments", json={"api": name})
        assert refused.status_code == 422, refused.text
        message = refused.json()["message"]
        assert f"default/{name}: connection.ca_bundle" in message
        assert repr(path) in message
        for detail in ("Errno", "No such file", "Is a directory", "PEM lib", "[X509"):
            assert detail not in message, message
        assert dev.get("/api/v1/environments/dev").json()["desired_revision"] is None
        assert dev.get("/api/v1/environments/dev/deployments").json()["items"] == []
    # the environment is not blocked: a good API deploys
    ok = dev.post("/api/v1/environments/dev/deployments", json={"api": "fine"})
    assert ok.status_code == 201, ok.text
    desired = dev.get("/api/v1/environments/dev").json()["desired_revision"]
    assert desired == ok.json()["env_revision"]
    served = dev.get("/api/v1/environments/dev/revision").json()
    assert [a["api"]["name"] for a in served["apis"]] == ["fine"]


def test_a_loadable_ca_bundle_and_plain_http_backends_deploy(dev: TestClient) -> None:
    if not SYSTEM_CAS.is_file():
        missing_capability(f"no system CA bundle file at {SYSTEM_CAS} (Debian ca-certificates)")
    with_bundle = https_api("cas", str(SYSTEM_CAS))
    plain = https_api("plain", "/nowhere/ca.pem", url="http://127.0.0.1:9")  # no TLS: not used
    for api in (with_bundle, plain):
        assert dev.post("/api/v1/projects/default/apis", json=api).status_code == 201
        deployed = dev.post("/api/v1/environments/dev/deployments", json={"api": api["name"]})
        assert deployed.status_code == 201, deployed.text


def test_the_worker_refuses_the_same_revision_with_the_same_safe_message(tmp_path: Path) -> None:
    for path in bad_bundles(tmp_path):
        api = ApiProxy.model_validate(https_api("broken", path))
        revision = EnvironmentRevision(
            environment="dev",
            revision=1,
            created_at=datetime.now(UTC),
            apis=[DeployedApi(api=api, api_revision=1)],
        )
        with pytest.raises(DeploymentError) as caught:
            compile_runtime(revision)
        assert "connection.ca_bundle" in str(caught.value)
        assert "Errno" not in str(caught.value)
