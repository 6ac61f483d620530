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

REPLY_HEADERS = "_portway.reply_headers"
"""ctx.variables key: headers to add to whatever reaches the client (CORS, X-RateLimit-*)."""

_NAMES: dict[str, tuple[str, bytes | None]] = {}
_MAX_NAMES = 1024


def _names(name: str) -> tuple[str, bytes | None]:
    """A header name in lower case, and as received headers spell it (``None``: no received
    header can have it). Policies ask for the same few names on every request, so the answers
    are kept (at most ``_MAX_NAMES``: a script may ask for any name)."""
    found = _NAMES.get(name)
    if found is None:
        lname = name.lower()
        try:
            wname: bytes | None = lname.encode("latin-1")
        except UnicodeEncodeError:
            wname = None
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        found = _NAMES[name] = (lname, wname)
    return found


class HeaderMap:
    """Case-insensitive, order-preserving, multi-valued HTTP headers (names kept as received).

    ``from_wire`` wraps headers as ``portway.http`` parses them (bytes, lower-case names) without
    decoding them: reads decode only what they return, and ``wire()`` gives them back as they
    came, so headers no policy changed cross the pipeline without being converted twice. Headers
    added by policies are kept as text after the wire ones (``added``)."""

    __slots__ = ("_items", "_wire")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._wire: list[tuple[bytes, bytes]] = []
        """the received headers still held as bytes (names lower-case), before ``_items``"""
        self._items: list[tuple[str, str]] = list(items)

    @classmethod
    def from_wire(cls, headers: Iterable[tuple[bytes, bytes]]) -> HeaderMap:
        """Headers with lower-case latin-1 names, as ``portway.http`` parses them."""
        found = cls.__new__(cls)
        found._wire = list(headers)
        found._items = []
        return found

    def get(self, name: str, default: str | None = None) -> str | None:
        lname, wname = _names(name)
        if self._wire:
            for wkey, raw in self._wire:
                if wkey == wname:
                    return raw.decode("latin-1")
        for key, value in self._items:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lname, wname = _names(name)
        found: list[str] = []
        if self._wire:
            found = [v.decode("latin-1") for k, v in self._wire if k == wname]
        found += [v for k, v in self._items if k.lower() == lname]
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self._items.append((name, value))

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lname, wname = _names(name)
        if self._wire:
            for wkey, _ in self._wire:
                if wkey == wname:
                    self._wire = [(k, v) for k, v in self._wire if k != wname]
                    break
        items = self._items
        for key, _ in items:
            if key.lower() == lname:
                self._items = [(k, v) for k, v in items if k.lower() != lname]
                break

    def items(self) -> list[tuple[str, str]]:
        if not self._wire:
            return list(self._items)
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._wire] + self._items

    def wire(self) -> list[tuple[bytes, bytes]]:
        """The headers as bytes with lower-case names (``UnicodeEncodeError`` for a value that is
        not latin-1): the received ones unchanged, then those added as text."""
        return wire_headers(self._wire, self._items)

    def added(self) -> list[tuple[str, str]]:
        """The headers held as text: all of them, or for ``from_wire`` those added since."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._wire) + len(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({self.items()!r})"


def wire_headers(
    received: Iterable[tuple[bytes, bytes]], added: Iterable[tuple[str, str]]
) -> list[tuple[bytes, bytes]]:
    """Headers as ``portway.http`` sends them: ``received`` (bytes, lower-case names) unchanged,
    then ``added`` (text) with lower-case latin-1 names and values (``UnicodeEncodeError`` for
    text that is not latin-1)."""
    out = list(received)
    for k, v in added:
        out.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return out


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
    """What the worker runs around the backend call; compiled once per revision and route.

    ``response_phase`` False says that ``on_response`` would only add the pending reply headers
    (``ctx.variables[REPLY_HEADERS]``) to the backend's answer: no policy acts on responses. The
    worker then adds them itself and builds no response view."""

    response_phase: bool

    async def on_request(self, ctx: PolicyContext) -> Reply | None: ...

    async def on_response(self, ctx: PolicyContext) -> Reply | None: ...

    async def on_error(self, ctx: PolicyContext) -> Reply | None: ...

    def on_log(self, ctx: PolicyContext) -> None: ...


class NoPipeline:
    """The no-op pipeline: a route without policies."""

    __slots__ = ()
    response_phase = False

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return None

    def on_log(self, ctx: PolicyContext) -> None:
        return None


NO_PIPELINE: Pipeline = NoPipeline()
