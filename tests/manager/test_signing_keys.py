"""JWT signing keys per environment: generated or imported, rotated with an overlap, retired;
private keys write-only (never answered, masked in audit, sealed at rest) and delivered only to
the environment's workers, only while current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from portway.manager.settings import ManagerSettings
from tests.manager.test_consumers import API, pulled

K = "/api/v1/environments/dev/signing-keys"


@pytest.fixture
def deployed(admin: TestClient) -> TestClient:
    admin.post("/api/v1/projects", json={"name": "default"})
    for env in ("dev", "prod"):
        admin.post("/api/v1/environments", json={"name": env})
    admin.post("/api/v1/projects/default/apis", json=API)
    for env in ("dev", "prod"):
        response = admin.post(f"/api/v1/environments/{env}/deployments", json={"api": "orders"})
        assert response.status_code == 201
    return admin


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def keys_of(revision: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = revision["signing_keys"]
    return found


def test_a_key_reaches_only_its_environment_and_never_an_answer(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    created = deployed.post(K, json={})
    assert created.status_code == 201, created.text
    assert created.headers["X-Portway-Published"].startswith("dev@")
    view = created.json()
    assert (view["algorithm"], view["state"], view["retire_at"]) == ("ES256", "current", None)
    assert "private_key" not in view
    assert view["public_jwk"]["kid"] == view["kid"]
    assert (view["public_jwk"]["kty"], view["public_jwk"]["crv"]) == ("EC", "P-256")
    [key] = keys_of(pulled(deployed, settings))
    assert key["current"]
    assert key["kid"] == view["kid"]
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    # the public JWK is the private key's public half
    private = serialization.load_pem_private_key(key["private_key"].encode(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    token = jwt.encode({"sub": "x"}, private, algorithm="ES256")
    assert jwt.decode(token, jwt.PyJWK(view["public_jwk"]).key, algorithms=["ES256"])
    assert keys_of(pulled(deployed, settings, "prod")) == []
    shown = deployed.get("/api/v1/environments/dev/revision").json()
    assert keys_of(shown)[0]["private_key"] == "***"
    listed = deployed.get(K).json()
    assert [k["kid"] for k in listed] == [view["kid"]]
    assert "PRIVATE KEY" not in str(listed)
    assert "PRIVATE KEY" not in str(deployed.get("/api/v1/audit").json()["items"])
    for path in tmp_path.glob("manager.db*"):
        assert b"PRIVATE KEY" not in path.read_bytes()  # sealed at rest
    again = deployed.post(K, json={})
    assert again.status_code == 409
    assert "rotate it instead" in again.json()["message"]


def test_rotation_keeps_the_previous_key_for_the_overlap(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    first = deployed.post(K, json={"algorithm": "RS256"}).json()
    rotated = deployed.post(K + "/rotate", json={"overlap_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()
    assert (second["state"], second["algorithm"]) == ("current", "RS256")  # kept by default
    states = {k["kid"]: (k["state"], k["retire_at"]) for k in deployed.get(K).json()}
    assert states[first["kid"]][0] == "previous"
    assert states[first["kid"]][1] is not None
    keys = {k["kid"]: k for k in keys_of(pulled(deployed, settings))}
    assert keys[second["kid"]]["current"]
    assert keys[first["kid"]]["private_key"] is None  # workers only verify with it
    assert keys[first["kid"]]["retire_at"] is not None
    jwks = deployed.get("/api/v1/environments/dev/jwks").json()
    assert {k["kid"] for k in jwks["keys"]} == {first["kid"], second["kid"]}
    # retiring ends the overlap at once
    retired = deployed.post(f"{K}/{first['kid']}/retire")
    assert retired.status_code == 200, retired.text
    assert retired.json()["state"] == "retired"
    assert [k["kid"] for k in keys_of(pulled(deployed, settings))] == [second["kid"]]
    # without an overlap the old key is retired by the rotation itself
    third = deployed.post(K + "/rotate", json={"overlap_seconds": 0, "algorithm": "ES256"}).json()
    assert third["algorithm"] == "ES256"
    [only] = keys_of(pulled(deployed, settings))
    assert (only["kid"], only["algorithm"]) == (third["kid"], "ES256")
    assert only["public_jwk"]["kty"] == "EC"
    audit = deployed.get("/api/v1/audit?target_prefix=environments/dev/signing-keys").json()
    actions = {r["action"] for r in audit["items"]}
    assert {"signing_key.create", "signing_key.rotate", "signing_key.retire"} <= actions


def test_bring_your_own_key_and_refusals(deployed: TestClient, settings: ManagerSettings) -> None:
    own = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    created = deployed.post(K, json={"algorithm": "RS256", "private_key": own})
    assert created.status_code == 201, created.text
    [key] = keys_of(pulled(deployed, settings))
    assert key["private_key"] == own
    for body, status, text in [
        ({"algorithm": "ES256", "private_key": own}, 422, "private_key does not fit ES256"),
        ({"algorithm": "HS256"}, 422, "Input should be 'RS256' or 'ES256'"),
        ({"private_key": "garbage"}, 422, "private_key is not an unencrypted PEM private key"),
        ({"overlap_seconds": -1}, 422, "overlap_seconds"),
    ]:
        response = deployed.post(K + "/rotate", json=body)
        assert response.status_code == status, response.text
        assert text in response.text
    small = pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    weak = deployed.post(K + "/rotate", json={"algorithm": "RS256", "private_key": small})
    assert weak.status_code == 422
    assert deployed.post(f"{K}/nope/retire").status_code == 404
    assert deployed.get("/api/v1/environments/nope/signing-keys").status_code == 404
    fresh = deployed.post("/api/v1/environments/prod/signing-keys/rotate", json={})
    assert fresh.status_code == 422
    assert "has no current signing key" in fresh.json()["message"]
