"""The environment's JWT signing keys as a worker uses them, compiled once per revision.

The manager generates the keys, rotates them with an overlap and retires them; a revision carries
the current key (with its private key: the token endpoint signs with it) and the previous keys
that are still inside their overlap (public only). A previous key stops being published and
accepted at its ``retire_at`` by the worker's own clock, so the end of an overlap needs no new
revision. Threat model: a worker holds only the private key it signs with; a token signed by a
retired key, by a key of another environment or with an algorithm other than its key's fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from portway.config.revision import SigningKeySnapshot
from portway.policies._keys import key_fits, load_private_key


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str
    algorithm: str
    key: Any
    jwk: dict[str, Any]
    retire_at: float | None

    def live(self, now: float) -> bool:
        return self.retire_at is None or now < self.retire_at


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    key: Any


@dataclass(frozen=True, slots=True)
class EnvironmentKeys:
    signing: SigningKey | None = None
    verifying: tuple[VerifyingKey, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, snapshots: Sequence[SigningKeySnapshot]) -> EnvironmentKeys:
        signing = None
        verifying = []
        for snap in snapshots:
            public = jwk_public_key(snap.public_jwk)
            if not key_fits(snap.algorithm, public):
                continue
            retire = snap.retire_at.timestamp() if snap.retire_at is not None else None
            verifying.append(
                VerifyingKey(snap.kid, snap.algorithm, public, snap.public_jwk, retire)
            )
            if snap.current and snap.private_key is not None:
                signing = SigningKey(snap.kid, snap.algorithm, load_private_key(snap.private_key))
        return cls(signing, tuple(verifying))

    def find(self, kid: str, now: float) -> VerifyingKey | None:
        for key in self.verifying:
            if key.kid == kid and key.live(now):
                return key
        return None

    def jwks(self, now: float) -> dict[str, Any]:
        """The JWKS document: the current key and the previous ones still in their overlap."""
        return {"keys": [k.jwk for k in self.verifying if k.live(now)]}


def jwk_public_key(jwk: dict[str, Any]) -> Any:
    """The cryptography public key of a JWK (RSA or EC)."""
    return jwt.PyJWK(jwk).key


def public_jwk(private_pem: str, kid: str, algorithm: str) -> dict[str, Any]:
    """The public half of a PEM private key as a JWK with ``kid``, ``alg`` and ``use: sig``."""
    public = load_private_key(private_pem).public_key()
    maker = RSAAlgorithm if algorithm.startswith("RS") else ECAlgorithm
    jwk: dict[str, Any] = json.loads(maker.to_jwk(public))
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
