"""An environment revision stored in parts: a header document plus compressed chunks.

The revision's JSON is zlib-compressed, base64-encoded and cut into ``env_revision_parts``
documents of ``PART_CHARS`` characters, so each document stays far below a store's size limit
whatever the number of APIs. The header (``env_revisions``) is written last, so a revision is
either complete or invisible. The manager writes revisions this way; the schema migration that
converted revisions stored whole uses the same functions.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from portway.errors import DuplicateKey, NotFound

if TYPE_CHECKING:
    from portway.stores.config_store import ConfigStore

HEADERS = "env_revisions"
PARTS = "env_revision_parts"
ENCODING = "zlib+base64"
PART_CHARS = 512 * 1024  # base64 characters per stored part


def revision_key(environment: str, number: int) -> str:
    return f"{environment}@{number}"


def pack(raw: bytes) -> list[str]:
    packed = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
    return [packed[i : i + PART_CHARS] for i in range(0, len(packed), PART_CHARS)] or [""]


async def write_parts(store: ConfigStore, environment: str, key: str, raw: bytes) -> int:
    """Store ``raw`` as parts of revision ``key`` (replacing parts a crashed writer left);
    returns the number of parts."""
    chunks = pack(raw)
    for index, chunk in enumerate(chunks):
        part_key = f"{key}#{index}"
        data = {"environment": environment, "data": chunk}
        try:
            await store.insert(PARTS, part_key, data)
        except DuplicateKey:
            existing = await store.get(PARTS, part_key)
            if existing is None:
                raise
            await store.replace(PARTS, part_key, data, expected_version=existing.version)
    return len(chunks)


def header(
    environment: str,
    number: int,
    created_at: str,
    raw: bytes,
    parts: int,
    apis: int,
    consumers: int,
) -> dict[str, Any]:
    return {
        "environment": environment,
        "revision": number,
        "created_at": created_at,
        "encoding": ENCODING,
        "parts": parts,
        "bytes": len(raw),
        "apis": apis,
        "consumers": consumers,
    }


async def read_parts(store: ConfigStore, key: str, head: Mapping[str, Any]) -> bytes:
    """The raw revision JSON of header ``head`` (revision ``key``)."""
    chunks = []
    for index in range(int(head["parts"])):
        part = await store.get(PARTS, f"{key}#{index}")
        if part is None:
            raise NotFound(PARTS, f"{key}#{index}")
        chunks.append(str(part.data["data"]))
    return zlib.decompress(base64.b64decode("".join(chunks)))
