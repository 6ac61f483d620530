"""Policy secrets encrypted at rest: AES-GCM per field, with a key kept outside the store.

A sealed value reads ``pwsealed:v1:<key id>:<base64url(nonce + ciphertext)>``. The keyring comes
from ``PORTWAY_SECRETS_KEY`` (``id:base64url-32-bytes[,id:…]``, the first is the primary) or else
from ``secrets.key`` in the data directory (0600, created on first start). Values are sealed with
the primary key and opened with whichever key their id names; at start-up the manager re-seals
every stored secret that another key (or no key) sealed, so retiring an old key is: add a new
primary, start the manager, then drop the old key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portway.errors import ConfigError
from portway.manager.catalog import scoped_specs
from portway.policies.secrets import is_reference, secret_fields_of
from portway.stores.config_store import ConfigStore, Document, Order, Page

PREFIX = "pwsealed:v1:"
ENV_KEY = "PORTWAY_SECRETS_KEY"
KEY_FILE = "secrets.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Keyring:
    primary: str
    keys: Mapping[str, bytes]

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.keys[self.primary]).encrypt(nonce, plaintext.encode(), None)
        return f"{PREFIX}{self.primary}:{_b64(nonce + sealed)}"

    def open(self, value: str) -> str:
        key_id, _, payload = value.removeprefix(PREFIX).partition(":")
        key = self.keys.get(key_id)
        if key is None:
            raise ConfigError(f"a stored secret is sealed with unknown key {key_id!r}", ENV_KEY)
        raw = _unb64(payload)
        return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode()

    def current(self, value: str) -> bool:
        return value.startswith(f"{PREFIX}{self.primary}:")


def parse_keyring(text: str) -> Keyring:
    keys: dict[str, bytes] = {}
    order = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key_id, _, encoded = item.partition(":")
        key = _unb64(encoded)
        if not key_id or len(key) != 32:
            raise ValueError(f"{ENV_KEY}: each key is id:base64url of 32 bytes")
        keys[key_id] = key
        order.append(key_id)
    if not order:
        raise ValueError(f"{ENV_KEY}: no key")
    return Keyring(order[0], keys)


def load_keyring(data_dir: Path) -> Keyring:
    """The keyring from ``PORTWAY_SECRETS_KEY``, else from the data directory's key file."""
    from_env = os.environ.get(ENV_KEY)
    if from_env:
        return parse_keyring(from_env)
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps({"keys": [f"k{secrets.token_hex(4)}:{_b64(secrets.token_bytes(32))}"]})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    return parse_keyring(",".join(json.loads(path.read_text())["keys"]))


def _convert_spec(spec: dict[str, Any], convert: Callable[[str], str]) -> None:
    config = spec.get("config")
    if not isinstance(config, dict):
        return
    for name in secret_fields_of(spec) & config.keys():
        value = config[name]
        if isinstance(value, str) and value and not is_reference(value):
            config[name] = convert(value)


def _convert_field(data: Any, name: str, convert: Callable[[str], str]) -> None:
    if isinstance(data, dict) and isinstance(data.get(name), str) and data[name]:
        data[name] = convert(data[name])


def _convert_variable(variable: dict[str, Any], convert: Callable[[str], str]) -> None:
    value = variable.get("value")
    if variable.get("secret") and isinstance(value, str) and value:
        variable["value"] = convert(value)


def convert_secrets(collection: str, data: dict[str, Any], convert: Callable[[str], str]) -> None:
    """Apply ``convert`` to every policy secret of a stored document, in place."""
    if collection == "global_policies":
        _convert_spec(data, convert)
    elif collection in ("apis", "api_revisions"):
        api = data.get("api") if collection == "api_revisions" else data
        if isinstance(api, dict):
            for _, _, spec, _ in scoped_specs(api):
                _convert_spec(spec, convert)
    elif collection == "signing_keys":
        _convert_field(data, "private_key", convert)
    elif collection == "environment_variables":
        _convert_variable(data, convert)
    elif collection == "revision":
        for variable in (data.get("variables") or {}).values():
            _convert_variable(variable, convert)
        for deployed in data.get("apis") or []:
            for _, _, spec, _ in scoped_specs(deployed.get("api") or {}):
                _convert_spec(spec, convert)
        for spec in (data.get("global_policies") or {}).values():
            _convert_spec(spec, convert)
        for key in data.get("signing_keys") or []:
            _convert_field(key, "private_key", convert)
        nonce_secret = data.get("nonce_secret")
        if isinstance(nonce_secret, str) and nonce_secret:
            data["nonce_secret"] = convert(nonce_secret)


SEALED = ("apis", "api_revisions", "global_policies", "signing_keys", "environment_variables")


class SealedStore:
    """A config store that seals policy secrets on write and opens them on read."""

    def __init__(self, inner: ConfigStore, keyring: Callable[[], Keyring]) -> None:
        self.inner = inner
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        return self._keyring()

    def sealed(self, collection: str, data: Mapping[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(data))
        ring = self.keyring
        convert_secrets(
            collection,
            copy,
            lambda v: (
                ring.seal(ring.open(v) if v.startswith(PREFIX) else v) if not ring.current(v) else v
            ),
        )
        return copy

    def opened(self, collection: str, data: Mapping[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(data))
        ring = self.keyring
        convert_secrets(collection, copy, lambda v: ring.open(v) if v.startswith(PREFIX) else v)
        return copy

    def _doc(self, collection: str, doc: Document) -> Document:
        if collection not in SEALED:
            return doc
        return Document(doc.id, doc.version, self.opened(collection, doc.data))

    def _data(self, collection: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.sealed(collection, data) if collection in SEALED else data

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, collection: str, key: str) -> Document | None:
        doc = await self.inner.get(collection, key)
        return None if doc is None else self._doc(collection, doc)

    async def find(
        self, collection: str, where: Mapping[str, Any] | None = None, *, limit: int | None = None
    ) -> list[Document]:
        docs = await self.inner.find(collection, where, limit=limit)
        return [self._doc(collection, d) for d in docs]

    async def page(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order: Order = "asc",
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        found = await self.inner.page(collection, where, order=order, limit=limit, cursor=cursor)
        return Page([self._doc(collection, d) for d in found.documents], found.next)

    async def insert(self, collection: str, key: str, data: Mapping[str, Any]) -> Document:
        doc = await self.inner.insert(collection, key, self._data(collection, data))
        return Document(doc.id, doc.version, dict(data))

    async def replace(
        self, collection: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        doc = await self.inner.replace(
            collection, key, self._data(collection, data), expected_version=expected_version
        )
        return Document(doc.id, doc.version, dict(data))

    async def delete(
        self, collection: str, key: str, *, expected_version: int | None = None
    ) -> None:
        await self.inner.delete(collection, key, expected_version=expected_version)

    async def next_sequence(self, name: str) -> int:
        return await self.inner.next_sequence(name)

    async def reseal(self) -> int:
        """Re-seal each stored secret the primary key did not seal; returns documents written."""
        ring = self.keyring
        written = 0
        for collection in SEALED:
            for doc in await self.inner.find(collection):
                found: list[str] = []
                convert_secrets(collection, json.loads(json.dumps(doc.data)), _collect(found))
                if all(ring.current(v) for v in found):
                    continue
                data = self.sealed(collection, self.opened(collection, doc.data))
                await self.inner.replace(collection, doc.id, data, expected_version=doc.version)
                written += 1
        return written


def _collect(found: list[str]) -> Callable[[str], str]:
    def collect(value: str) -> str:
        found.append(value)
        return value

    return collect
