"""Audit records: who changed what and when, with an old/new diff and secrets masked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from portway.errors import DocumentTooLarge
from portway.policies.secrets import mask_secrets
from portway.stores.config_store import ConfigStore

_MAX_FIELDS = 1000  # changed fields named by a record whose values are omitted
_SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "private_key", "hash")


def mask(value: Any) -> Any:
    """A copy of ``value`` with every field whose name suggests a secret replaced by '***'."""
    if isinstance(value, dict):
        return {
            k: ("***" if any(w in str(k).lower() for w in _SECRET_WORDS) and v else mask(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level changes between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            changes.extend(diff(old.get(key), new.get(key), sub))
        return changes
    if old != new:
        return [{"field": path or "$", "old": old, "new": new}]
    return []


async def record(
    store: ConfigStore,
    actor: str,
    action: str,
    target: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    key = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
    entry: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "changes": diff(mask(mask_secrets(old or {})), mask(mask_secrets(new or {}))),
    }
    try:
        await store.insert("audit", key, entry)
    except DocumentTooLarge as exc:
        # a change to a very large document (an API proxy of a thousand endpoints): the record
        # keeps which fields changed, not their old and new values, rather than failing a write
        # that already happened
        fields = [c["field"] for c in entry["changes"]]
        entry["changes"] = [{"field": f} for f in fields[:_MAX_FIELDS]]
        entry["values_omitted"] = (
            f"the old and new values take {exc.size:,} bytes, more than an audit record holds; "
            f"{len(fields)} fields changed"
        )
        await store.insert("audit", key, entry)
