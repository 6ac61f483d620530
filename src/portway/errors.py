"""Portway's exception hierarchy (``portway.http`` keeps its own, it imports nothing of Portway).

    PortwayError                      base of everything Portway raises on purpose
    ├── ConfigError                   a configuration that fails validation (names the field)
    │   └── DocumentTooLarge          a document above the config store's size limit
    ├── UsageError                    a command line that cannot be carried out as given
    ├── StoreError                    a backend failed; driver errors are mapped here with ``from``
    │   ├── StoreUnavailable          the engine cannot be reached or timed out
    │   ├── NotFound                  no document with that id
    │   ├── Conflict                  the write would break a rule of the store
    │   │   ├── DuplicateKey          a unique constraint (id or declared fields) is taken
    │   │   └── StaleVersion          optimistic concurrency: the document changed meanwhile
    │   └── RejectedRecords           a log sink refused records for good (the rest were stored)
    ├── ClusterError                  manager <-> worker protocol failures
    │   ├── Unauthenticated           a cluster call without a valid signature
    │   └── UnknownEnvironment        a worker started for an environment the manager lacks
    └── DeploymentError               a revision that cannot be compiled or deployed

Errors that reach an HTTP client are rendered by the manager or the worker with a status, a short
reason and the correlation id — never with a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence


class PortwayError(Exception):
    """Base class of every error Portway raises on purpose."""


class ConfigError(PortwayError):
    """Configuration that fails validation; ``field`` is the dotted path of the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class UsageError(PortwayError):
    """A command line that cannot be carried out as given (a missing or contradictory option, an
    input file that cannot be read); ``portway`` prints it and exits with status 2."""


class DocumentTooLarge(ConfigError):
    """A document the config store refuses for its size (``size`` > ``limit`` bytes as JSON)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"is {size:,} bytes once encoded as JSON, more than the {limit:,} "
            "a stored document may hold",
            field="data",
        )
        self.size = size
        self.limit = limit


class StoreError(PortwayError):
    """A store backend failed."""


class StoreUnavailable(StoreError):
    """The engine behind a store cannot be reached or did not answer in time."""


class LogStoreUnavailable(StoreUnavailable):
    """The traffic log's store (SQLite, Elasticsearch) cannot be reached or did not answer in
    time: the manager's analytics and record search say so instead of blaming its configuration
    store."""


class NotFound(StoreError):
    def __init__(self, collection: str, key: str) -> None:
        super().__init__(f"{collection}/{key} not found")
        self.collection = collection
        self.key = key


class Conflict(StoreError):
    """The write would break a rule of the store; nothing was written."""


class DuplicateKey(Conflict):
    def __init__(self, collection: str, fields: Sequence[str], values: Sequence[object]) -> None:
        shown = ", ".join(f"{f}={v!r}" for f, v in zip(fields, values, strict=True))
        super().__init__(f"{collection}: another document already has {shown}")
        self.collection = collection
        self.fields = tuple(fields)


class StaleVersion(Conflict):
    def __init__(self, collection: str, key: str, expected: int, actual: int | None) -> None:
        super().__init__(
            f"{collection}/{key}: version {expected} is stale (current: {actual})"
            if actual is not None
            else f"{collection}/{key}: document no longer exists"
        )
        self.collection = collection
        self.key = key
        self.expected = expected
        self.actual = actual


class RejectedRecords(StoreError):
    """A traffic sink stored a batch except ``rejected``: records it can never accept (malformed).

    Retrying them is pointless; the shipper counts them and moves on.
    """

    def __init__(self, rejected: Sequence[tuple[str, str]]) -> None:
        shown = "; ".join(f"{rid or '?'}: {why}" for rid, why in rejected[:5])
        more = f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else ""
        super().__init__(f"{len(rejected)} record(s) rejected: {shown}{more}")
        self.rejected = list(rejected)


class ClusterError(PortwayError):
    """Manager <-> worker protocol failure."""


class Unauthenticated(ClusterError):
    """A cluster call without a valid signature."""


class UnknownEnvironment(ClusterError):
    def __init__(self, environment: str) -> None:
        super().__init__(
            f"environment {environment!r} does not exist on the manager; "
            "create it first (or start the worker with an existing --environment)"
        )
        self.environment = environment


class DeploymentError(PortwayError):
    """A revision that cannot be compiled or deployed."""
