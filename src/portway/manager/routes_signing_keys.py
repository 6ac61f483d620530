"""Routes: the environments' JWT signing keys (create, rotate with an overlap, retire).

Reading needs ``read``; every change needs ``manage_keys`` (administrators only), and publishes a
new revision of the environment at once (``X-Portway-Published``), since its workers sign and
verify with these keys. A private key is write-only: no answer carries it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from portway.config.management.signing_keys import Jwks, SigningKeyView
from portway.manager.deps import KeyManager, Reader, Svc
from portway.manager.routes_consumers import publish_now
from portway.manager.signing_keys import (
    RETIRED,
    SigningKeyCreate,
    SigningKeyRotate,
    key_view,
)

router = APIRouter()
EnvName = Annotated[str, Path(max_length=63)]
Kid = Annotated[str, Path(max_length=100)]
BASE = "/environments/{environment}/signing-keys"


@router.get(BASE, tags=["signing keys"], response_model=list[SigningKeyView])
async def list_signing_keys(environment: EnvName, svc: Svc, _: Reader) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [key_view(d, now) for d in await svc.signing_keys.all(environment)]


@router.get("/environments/{environment}/jwks", tags=["signing keys"], response_model=Jwks)
async def environment_jwks(environment: EnvName, svc: Svc, _: Reader) -> dict[str, Any]:
    """The JWKS the environment's workers publish (current and previous keys)."""
    now = datetime.now(UTC)
    views = [key_view(d, now) for d in await svc.signing_keys.all(environment)]
    return {"keys": [v["public_jwk"] for v in views if v["state"] != RETIRED]}


@router.post(BASE, status_code=201, tags=["signing keys"], response_model=SigningKeyView)
async def create_signing_key(
    environment: EnvName,
    body: SigningKeyCreate,
    svc: Svc,
    who: KeyManager,
    response: Response,
) -> dict[str, Any]:
    """The environment's first signing key (generated unless ``private_key`` is given)."""
    doc = await svc.signing_keys.create(environment, body, who.username)
    await publish_now(svc, who, f"signing key {doc.id} created", response, only=environment)
    return key_view(doc)


@router.post(
    BASE + "/rotate", status_code=201, tags=["signing keys"], response_model=SigningKeyView
)
async def rotate_signing_key(
    environment: EnvName,
    body: SigningKeyRotate,
    svc: Svc,
    who: KeyManager,
    response: Response,
) -> dict[str, Any]:
    """A new current key; the old one stays published and accepted for ``overlap_seconds``."""
    doc = await svc.signing_keys.rotate(environment, body, who.username)
    await publish_now(svc, who, f"signing keys rotated to {doc.id}", response, only=environment)
    return key_view(doc)


@router.post(BASE + "/{kid}/retire", tags=["signing keys"], response_model=SigningKeyView)
async def retire_signing_key(
    environment: EnvName, kid: Kid, svc: Svc, who: KeyManager, response: Response
) -> dict[str, Any]:
    """End a key now: its tokens stop verifying and, if it was current, nothing signs."""
    doc = await svc.signing_keys.retire(environment, kid, who.username)
    await publish_now(svc, who, f"signing key {kid} retired", response, only=environment)
    return key_view(doc)
