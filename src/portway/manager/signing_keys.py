"""JWT signing keys per environment: generated (or imported) here, rotated with an overlap,
retired; delivered to the workers in the signed environment revision.

An environment has at most one ``current`` key: the token endpoint (``key_source: environment``)
signs with it and names it in ``kid``. Rotation makes a new current key and turns the old one
``previous`` until ``retire_at`` (now + overlap): workers keep publishing it in their JWKS and the
``jwt`` policy keeps accepting tokens it signed, so tokens issued just before the rotation stay
valid; at ``retire_at`` the workers drop it by their own clock, and ``retire`` ends it at once.

Threat model: a private key is write-only. It is sealed at rest like policy secrets
(``SealedStore``), never in an answer or an audit record, and sent only to the workers of its own
environment inside the signed revision, and only while it is the current key (workers verify a
previous key with its public half).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import Field, model_validator

from portway.config.base import Model
from portway.config.revision import SigningKeySnapshot
from portway.errors import ConfigError, Conflict, NotFound
from portway.manager import audit
from portway.manager.catalog import Catalog
from portway.policies._keys import key_fits, load_private_key
from portway.policies.secrets import WRITE_ONLY
from portway.policies.signing_keys import public_jwk
from portway.stores.config_store import ConfigStore, Document

COLLECTION = "signing_keys"
KeyAlgorithm = Literal["RS256", "ES256"]
MAX_OVERLAP = 90 * 86400
CURRENT, PREVIOUS, RETIRED = "current", "previous", "retired"


class SigningKeyCreate(Model):
    """The environment's first signing key (later ones come from ``rotate``)."""

    algorithm: Annotated[KeyAlgorithm, Field(description="RS256 (RSA 2048) or ES256 (P-256)")] = (
        "ES256"
    )
    private_key: Annotated[
        str | None,
        Field(
            max_length=20000,
            description="bring your own PEM private key (e.g. when migrating); generated when "
            "absent. Write-only: never shown again",
            json_schema_extra=WRITE_ONLY,
        ),
    ] = None

    @model_validator(mode="after")
    def _fits(self) -> SigningKeyCreate:
        if self.private_key is not None and not key_fits(
            self.algorithm, load_private_key(self.private_key)
        ):
            raise ValueError(f"private_key does not fit {self.algorithm}")
        return self


class SigningKeyRotate(SigningKeyCreate):
    overlap_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_OVERLAP,
            description="how long the old key is still published and accepted",
        ),
    ] = 86400


def generate(algorithm: str) -> str:
    """A new private key as unencrypted PKCS#8 PEM."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def key_state(data: dict[str, Any], now: datetime) -> str:
    """``previous`` turns ``retired`` at its ``retire_at`` without a write."""
    retire_at = _when(data.get("retire_at"))
    if data["state"] == PREVIOUS and retire_at is not None and retire_at <= now:
        return RETIRED
    return str(data["state"])


def key_view(doc: Document, now: datetime | None = None) -> dict[str, Any]:
    """What the management API shows: everything but the private key."""
    data = doc.data
    return {
        "kid": data["kid"],
        "environment": data["environment"],
        "algorithm": data["algorithm"],
        "state": key_state(data, now or datetime.now(UTC)),
        "created_at": data["created_at"],
        "retire_at": data.get("retire_at"),
        "public_jwk": data["public_jwk"],
        "version": doc.version,
    }


def _audited(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "private_key"} | {"private_key": "***"}


class SigningKeys:
    def __init__(self, store: ConfigStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    async def all(self, environment: str) -> list[Document]:
        await self.catalog.environment(environment)
        docs = await self.store.find(COLLECTION, {"environment": environment})
        return sorted(docs, key=lambda d: (str(d.data["created_at"]), d.id))

    async def _current(self, environment: str) -> Document | None:
        return next((d for d in await self.all(environment) if d.data["state"] == CURRENT), None)

    async def _insert(
        self, environment: str, body: SigningKeyCreate, actor: str, action: str
    ) -> Document:
        # RSA generation takes a noticeable slice of a second: off the event loop
        pem = body.private_key
        if pem is None:
            pem = await asyncio.to_thread(generate, body.algorithm)
        kid = f"{environment}-{secrets.token_hex(8)}"
        data = {
            "environment": environment,
            "kid": kid,
            "algorithm": body.algorithm,
            "private_key": pem,
            "public_jwk": public_jwk(pem, kid, body.algorithm),
            "state": CURRENT,
            "created_at": datetime.now(UTC).isoformat(),
            "retire_at": None,
        }
        doc = await self.store.insert(COLLECTION, kid, data)
        await audit.record(
            self.store,
            actor,
            f"signing_key.{action}",
            f"environments/{environment}/signing-keys/{kid}",
            None,
            _audited(data),
        )
        return doc

    async def create(self, environment: str, body: SigningKeyCreate, actor: str) -> Document:
        """The environment's first key; with a current key already, rotate instead."""
        current = await self._current(environment)
        if current is not None:
            raise Conflict(
                f"environment {environment} already has a current signing key "
                f"({current.data['kid']}); rotate it instead"
            )
        return await self._insert(environment, body, actor, "create")

    async def rotate(self, environment: str, body: SigningKeyRotate, actor: str) -> Document:
        """A new current key; the old one stays published and accepted for the overlap."""
        old = await self._current(environment)
        if old is None:
            raise ConfigError(
                f"environment {environment} has no current signing key to rotate; create one",
                "environment",
            )
        retire_at = datetime.now(UTC) + timedelta(seconds=body.overlap_seconds)
        state = PREVIOUS if body.overlap_seconds > 0 else RETIRED
        changed = {**old.data, "state": state, "retire_at": retire_at.isoformat()}
        await self.store.replace(COLLECTION, old.id, changed, expected_version=old.version)
        await audit.record(
            self.store,
            actor,
            "signing_key.rotate",
            f"environments/{environment}/signing-keys/{old.id}",
            _audited(old.data),
            _audited(changed),
        )
        if "algorithm" not in body.model_fields_set:
            body = body.model_copy(update={"algorithm": old.data["algorithm"]})
        return await self._insert(environment, body, actor, "create")

    async def retire(self, environment: str, kid: str, actor: str) -> Document:
        """End a key now: no longer published, accepted or (if current) used to sign."""
        await self.catalog.environment(environment)
        doc = await self.store.get(COLLECTION, kid)
        if doc is None or doc.data.get("environment") != environment:
            raise NotFound(COLLECTION, f"{environment}/{kid}")
        if key_state(doc.data, datetime.now(UTC)) == RETIRED:
            return doc
        changed = {**doc.data, "state": RETIRED, "retire_at": datetime.now(UTC).isoformat()}
        new = await self.store.replace(COLLECTION, doc.id, changed, expected_version=doc.version)
        await audit.record(
            self.store,
            actor,
            "signing_key.retire",
            f"environments/{environment}/signing-keys/{kid}",
            _audited(doc.data),
            _audited(changed),
        )
        return new

    async def snapshot(self, environment: str) -> list[SigningKeySnapshot]:
        """What the environment's workers get: the current key (with its private key) and the
        previous keys still inside their overlap (public only)."""
        now = datetime.now(UTC)
        out = []
        for doc in await self.store.find(COLLECTION, {"environment": environment}):
            data = doc.data
            state = key_state(data, now)
            if state == RETIRED:
                continue
            out.append(
                SigningKeySnapshot(
                    kid=data["kid"],
                    algorithm=data["algorithm"],
                    public_jwk=data["public_jwk"],
                    private_key=data["private_key"] if state == CURRENT else None,
                    current=state == CURRENT,
                    retire_at=_when(data.get("retire_at")),
                )
            )
        return sorted(out, key=lambda k: (not k.current, k.kid))
