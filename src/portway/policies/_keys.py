"""Key handling shared by JWT validation and the token endpoint: which key type each algorithm
may use. Pinning the family per algorithm is what defeats algorithm confusion (an RS256 public
key used as an HS256 secret, an EC key offered for an RSA algorithm, ``alg: none``)."""

from __future__ import annotations

from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

Algorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
]  # fmt: skip
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_SECRET_LENGTH = 32


def key_fits(algorithm: str, key: Any) -> bool:
    """Whether ``key`` (a cryptography key object) may verify/sign ``algorithm``."""
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size >= 2048
    if algorithm in _EC_CURVES:
        return (
            isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
            and key.curve.name == _EC_CURVES[algorithm]
        )
    if algorithm == "EdDSA":
        return isinstance(
            key,
            ed25519.Ed25519PublicKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PublicKey
            | ed448.Ed448PrivateKey,
        )
    return False


def load_public_key(pem: str) -> Any:
    try:
        return load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("public_key is not a PEM public key") from exc


def load_private_key(pem: str) -> Any:
    try:
        return load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("private_key is not an unencrypted PEM private key") from exc
