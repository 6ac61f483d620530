"""The narrow contract between the worker and the policies.

The worker builds a ``PolicyContext`` per request (a facade: no sockets, no transport objects) and
runs the compiled pipeline of the matched route. A request hook either continues (returns ``None``)
or answers (returns a ``Reply``). Policy objects are compiled once per revision and hold no
per-request state; anything per request lives in the context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class HeaderMap:
    """Case-insensitive, order-preserving, multi-valued HTTP headers (names kept as received)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for key, value in self._items:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self._items.append((name, value))

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lname = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lname]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({self._items!r})"


@dataclass(slots=True)
class Reply:
    """An answer produced by the gateway itself (a policy, an error, a mock)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


BodyReader = Callable[[], Awaitable[bytes]]


@dataclass(slots=True)
class RequestView:
    """The client request as policies see it; mutations are forwarded to the backend."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: HeaderMap
    read_body: BodyReader
    body_override: bytes | None = None

    async def body(self) -> bytes:
        """The whole body (buffered once, within the API's body-size limit)."""
        if self.body_override is None:
            self.body_override = await self.read_body()
        return self.body_override

    def set_body(self, body: bytes) -> None:
        self.body_override = body

    def query_get(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class ResponseView:
    """The backend response (or a reply) on its way to the client."""

    status: int
    headers: HeaderMap
    read_body: BodyReader
    body_override: bytes | None = None

    async def body(self) -> bytes:
        if self.body_override is None:
            self.body_override = await self.read_body()
        return self.body_override

    def set_body(self, body: bytes) -> None:
        self.body_override = body


@dataclass(slots=True)
class PolicyContext:
    """Everything a policy may read or change for one request."""

    request: RequestView
    client_ip: str
    correlation_id: str
    environment: str
    project: str
    api: str
    endpoint: str | None
    path_params: Mapping[str, str]
    scheme: str = "http"
    tls_peer_cert: Mapping[str, Any] | None = None
    response: ResponseView | None = None
    consumer: str | None = None
    roles: tuple[str, ...] = ()
    error: GatewayError | None = None
    soap_version: Literal["1.1", "1.2"] | None = None
    """``1.1``/``1.2`` when error answers are SOAP faults (a SOAP API, or the client spoke SOAP)."""
    variables: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class GatewayError:
    """An error raised in the pipeline or by the proxy, rendered by the error list and templates."""

    status: int
    code: str
    message: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    policy: str | None = None
    details: Mapping[str, Any] | None = None
    """Extra fields for the error body (e.g. the failing JSON path of a schema validation)."""


class Pipeline(Protocol):
    """What the worker runs around the backend call; compiled once per revision and route."""

    async def on_request(self, ctx: PolicyContext) -> Reply | None: ...

    async def on_response(self, ctx: PolicyContext) -> Reply | None: ...

    async def on_error(self, ctx: PolicyContext) -> Reply | None: ...

    def on_log(self, ctx: PolicyContext) -> None: ...


class NoPipeline:
    """The no-op pipeline: a route without policies."""

    __slots__ = ()

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return None

    def on_log(self, ctx: PolicyContext) -> None:
        return None


NO_PIPELINE: Pipeline = NoPipeline()
