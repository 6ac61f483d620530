"""Configuration models: environments, projects, API proxies and their policies.

These are the documents the manager validates on write and stores, and the pieces of the revision a
worker pulls. Policy *configs* stay plain mappings here; each policy validates its own config
with its own model (``portway.policies``), called by the manager before anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, Strict, ValidationError, field_validator, model_validator

from portway.config.base import Model, Slug
from portway.config.capture import CaptureSettings
from portway.config.variables import has_references, references

RESERVED_PREFIX = "/_portway"
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_TEMPLATE_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~!$&'()*+,;=:@%-]*)$")


def _check_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{what} must start with '/'")
    if path != "/" and path.endswith("/"):
        raise ValueError(f"{what} must not end with '/'")
    if "//" in path:
        raise ValueError(f"{what} must not contain '//'")
    for segment in path.split("/")[1:]:
        if segment in (".", ".."):
            raise ValueError(f"{what} must not contain '.' or '..' segments")
        if not _TEMPLATE_SEGMENT.fullmatch(segment):
            raise ValueError(
                f"{what} segment {segment!r} is neither a literal nor a '{{name}}' parameter"
            )
    return path


def _check_methods(methods: list[str]) -> list[str]:
    upper = [m.upper() for m in methods]
    unknown = sorted(set(upper) - HTTP_METHODS)
    if unknown:
        raise ValueError(f"unknown HTTP method(s): {', '.join(unknown)}")
    if len(set(upper)) != len(upper):
        raise ValueError("methods must not repeat")
    return upper


class Environment(Model):
    """A group of workers with a name, a type and its own access URL."""

    name: Slug
    type: Annotated[str, Field(pattern=r"^(test|prod|dev|staging)$")] = "test"
    description: Annotated[str, Field(max_length=1000)] = ""
    access_url: Annotated[str, Field(max_length=2000)] = ""


class Project(Model):
    name: Slug
    description: Annotated[str, Field(max_length=1000)] = ""


class BackendKind(StrEnum):
    PRIMARY = "primary"
    FAILOVER = "failover"


class Backend(Model):
    """One backend address of an API proxy."""

    url: Annotated[
        str,
        Field(
            max_length=2000,
            description="http(s)://host[:port][/base-path]; may read environment variables as "
            "${env.NAME} (checked again once expanded at deploy)",
        ),
    ]
    weight: Annotated[int, Field(ge=1, le=1000, description="share for weighted balancing")] = 1
    kind: Annotated[BackendKind, Strict(False)] = BackendKind.PRIMARY
    health_check: Annotated[bool, Field(description="include in active health checks")] = True
    http2: Annotated[
        bool,
        Field(
            description="speak HTTP/2 to this address (h2c with prior knowledge on http://, ALPN "
            "h2 on https://); required for gRPC backends"
        ),
    ] = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if has_references(value):
            references(value)  # the syntax now; the expanded URL at deploy
            return value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        if not parts.hostname:
            raise ValueError("a host is required")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or a fragment")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError("port is not a number in 1..65535") from exc
        return value.rstrip("/")


class Balancing(StrEnum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    LEAST_CONNECTIONS = "least_connections"
    RANDOM = "random"
    IP_HASH = "ip_hash"


class RetryDelay(Model):
    kind: Annotated[str, Field(pattern=r"^(fixed|exponential)$")] = "exponential"
    initial: Annotated[float, Field(ge=0, le=60, description="seconds before the first retry")] = (
        0.05
    )
    maximum: Annotated[float, Field(ge=0, le=300, description="cap on one delay, seconds")] = 2.0
    multiplier: Annotated[float, Field(ge=1, le=10)] = 2.0


class ConnectionSettings(Model):
    connect_timeout: Annotated[float, Field(gt=0, le=300, description="seconds")] = 5.0
    read_timeout: Annotated[float, Field(gt=0, le=3600, description="seconds between bytes")] = 30.0
    total_timeout: Annotated[float, Field(gt=0, le=86400, description="seconds per attempt")] = 60.0
    pool_size: Annotated[int, Field(ge=1, le=10000, description="idle connections per address")] = (
        64
    )
    retries: Annotated[int, Field(ge=0, le=10, description="extra tries on primary addresses")] = 1
    failover_retries: Annotated[int, Field(ge=0, le=10)] = 1
    retry_non_idempotent: Annotated[
        bool, Field(description="also retry POST/PATCH (only when the backend is idempotent)")
    ] = False
    retry_delay: RetryDelay = RetryDelay()
    tls_verify: Annotated[bool, Field(description="verify backend certificates")] = True
    ca_bundle: Annotated[str | None, Field(description="PEM file of trusted CAs")] = None
    dns_ttl: Annotated[float, Field(ge=0, le=86400, description="seconds to cache DNS")] = 30.0
    error_statuses: Annotated[
        list[int], Field(description="backend statuses counted as errors (default: >= 500)")
    ] = Field(default_factory=list)


class EndpointConnection(Model):
    """An endpoint's own timeouts and retries; each field set replaces the API's
    (``ConnectionSettings``), each left out keeps it."""

    read_timeout: Annotated[
        float | None, Field(gt=0, le=3600, description="seconds between bytes")
    ] = None
    total_timeout: Annotated[
        float | None, Field(gt=0, le=86400, description="seconds per attempt")
    ] = None
    retries: Annotated[
        int | None, Field(ge=0, le=10, description="extra tries on primary addresses")
    ] = None
    failover_retries: Annotated[int | None, Field(ge=0, le=10)] = None
    retry_non_idempotent: Annotated[
        bool | None,
        Field(description="also retry POST/PATCH (only when the backend is idempotent)"),
    ] = None
    retry_delay: RetryDelay | None = None

    def applied_to(self, connection: ConnectionSettings) -> ConnectionSettings:
        """``connection`` with this endpoint's settings in place of the API's."""
        update = {name: getattr(self, name) for name in self.model_fields_set}
        return connection.model_copy(update={k: v for k, v in update.items() if v is not None})


class HealthCheck(Model):
    enabled: bool = False
    path: str = "/"
    interval: Annotated[float, Field(gt=0, le=3600)] = 30.0
    timeout: Annotated[float, Field(gt=0, le=300)] = 5.0
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    expected_statuses: list[int] = Field(default_factory=lambda: [200])

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> HealthCheck:
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class PassiveHealth(Model):
    enabled: bool = True
    max_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    eject_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0


class CircuitBreaker(Model):
    enabled: bool = False
    window: Annotated[float, Field(gt=0, le=3600, description="seconds of history")] = 10.0
    threshold_count: Annotated[int | None, Field(ge=1)] = 5
    threshold_percent: Annotated[float | None, Field(gt=0, le=100)] = None
    min_requests: Annotated[int, Field(ge=1)] = 5
    sleep_window: Annotated[float, Field(gt=0, le=3600, description="seconds open")] = 30.0


class PolicySpec(Model):
    """One policy in a request, response or error list."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    description: Annotated[str, Field(max_length=1000)] = ""
    active: bool = True
    shadow: Annotated[bool, Field(description="evaluate and record, never enforce")] = False
    condition: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    messages: Annotated[
        dict[str, str], Field(description="error message overrides by error code")
    ] = Field(default_factory=dict)
    global_ref: Annotated[
        str | None, Field(description="name of a global policy this entry refers to")
    ] = None


class PolicyLists(Model):
    request: list[PolicySpec] = Field(default_factory=list)
    response: list[PolicySpec] = Field(default_factory=list)
    error: list[PolicySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyLists:
        seen: set[str] = set()
        for spec in (*self.request, *self.response, *self.error):
            if spec.name in seen:
                raise ValueError(f"policy name {spec.name!r} is used twice")
            seen.add(spec.name)
        return self


class SoapOperation(Model):
    """Which SOAP requests an endpoint takes: those naming ``action`` (``SOAPAction`` header,
    or the ``action`` parameter of ``application/soap+xml``) and/or whose Body starts with
    ``element``. Endpoints sharing a path and methods are told apart by these."""

    name: Annotated[str, Field(min_length=1, max_length=200, description="operation name")]
    action: Annotated[
        str | None, Field(max_length=1000, description="the operation's SOAP action")
    ] = None
    element: Annotated[
        str | None,
        Field(
            max_length=1000,
            pattern=r"^(\{[^{}\s]+\})?[A-Za-z_][\w.-]*$",
            description="the Body's first element as {namespace}local (local alone: no namespace)",
        ),
    ] = None

    @model_validator(mode="after")
    def _something(self) -> SoapOperation:
        if self.action is None and self.element is None:
            raise ValueError("give action, element or both")
        return self


class Endpoint(Model):
    """An operation under the proxy's base path, with its own policies."""

    path: Annotated[str, Field(max_length=2000, description="relative path, '{name}' params")]
    methods: Annotated[
        list[str],
        Field(
            description="allowed methods; empty = those of the proxy (all but TRACE unless the "
            "proxy lists it)"
        ),
    ] = Field(default_factory=list)
    description: Annotated[str, Field(max_length=1000)] = ""
    soap: Annotated[
        SoapOperation | None,
        Field(description="a SOAP operation: matched by its action and/or Body element"),
    ] = None
    policies: PolicyLists = PolicyLists()
    connection: Annotated[
        EndpointConnection | None,
        Field(description="this endpoint's timeouts and retries, in place of the API's"),
    ] = None

    _path = field_validator("path")(classmethod(lambda cls, v: _check_path(v, "path")))
    _methods = field_validator("methods")(classmethod(lambda cls, v: _check_methods(v)))


# Traffic management: backend groups (canary, blue/green), sticky sessions, mirroring. Kept in one
# block with one field on ``ApiProxy`` (``traffic``); the worker side is ``portway.worker.traffic``.

DEFAULT_GROUP = "default"
"""The name of the group the API's own ``backends`` (with its ``balancing``) form."""
_TOKEN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"
"""An HTTP token (RFC 9110): what a header name and a cookie name may be."""


class BackendGroup(Model):
    """A named set of backend addresses with its own balancing (a canary, the green of
    blue/green). Connection, health and circuit-breaker settings are the API's."""

    name: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
            description="the group's name in weights and rules ('default' is the API's own "
            "backends)",
        ),
    ]
    backends: Annotated[list[Backend], Field(min_length=1, max_length=100)]
    balancing: Annotated[Balancing, Strict(False)] = Balancing.ROUND_ROBIN


class GroupRule(Model):
    """Requests carrying a header (or cookie) go to ``group``, whatever the weights say."""

    group: Annotated[str, Field(max_length=63, description="a group name, or 'default'")]
    header: Annotated[str | None, Field(pattern=_TOKEN, description="header name (any case)")] = (
        None
    )
    cookie: Annotated[str | None, Field(pattern=_TOKEN, description="cookie name")] = None
    values: Annotated[
        list[Annotated[str, Field(max_length=1000)]],
        Field(
            max_length=100,
            description="accepted values, compared exactly; empty: any value (present)",
        ),
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> GroupRule:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("exactly one of header and cookie is required")
        return self


class StickyMode(StrEnum):
    OFF = "off"
    COOKIE = "cookie"
    HASH = "hash"


class HashOn(StrEnum):
    CLIENT_IP = "client_ip"
    HEADER = "header"
    COOKIE = "cookie"


class StickySessions(Model):
    """Keep a client on one backend address: a signed cookie the worker sets (``cookie``), or a
    consistent hash of a header, cookie or the client IP (``hash``)."""

    mode: Annotated[StickyMode, Strict(False)] = StickyMode.OFF
    cookie_name: Annotated[
        str, Field(pattern=_TOKEN, description="mode cookie: the cookie the worker sets")
    ] = "portway_sticky"
    max_age: Annotated[
        int | None,
        Field(ge=1, le=31_536_000, description="mode cookie: seconds; null: a session cookie"),
    ] = None
    hash_on: Annotated[HashOn, Strict(False), Field(description="mode hash: what is hashed")] = (
        HashOn.CLIENT_IP
    )
    hash_name: Annotated[
        str | None,
        Field(pattern=_TOKEN, description="mode hash: the header or cookie name"),
    ] = None

    @model_validator(mode="after")
    def _hash_name(self) -> StickySessions:
        named = self.hash_on != HashOn.CLIENT_IP
        if self.mode == StickyMode.HASH and named and self.hash_name is None:
            raise ValueError(f"hash_name is required when hash_on is {self.hash_on.value}")
        return self


class Mirror(Model):
    """A copy of sampled requests to another backend, sent in the background; its answer is
    discarded and it never delays or fails the client's request."""

    url: Annotated[str, Field(max_length=2000, description="http(s)://host[:port][/base-path]")]
    percent: Annotated[float, Field(gt=0, le=100, description="share of requests mirrored")] = 100.0
    max_in_flight: Annotated[
        int, Field(ge=1, le=1000, description="mirror exchanges at once per process; more: dropped")
    ] = 16
    timeout: Annotated[float, Field(gt=0, le=300, description="seconds per mirror exchange")] = 5.0
    max_body_bytes: Annotated[
        int,
        Field(ge=0, le=16 * 1024 * 1024, description="larger request bodies are not mirrored"),
    ] = 1024 * 1024

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return Backend(url=value).url
        except ValidationError as exc:  # the same rules as a backend's URL, named as this field
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


class TrafficSettings(Model):
    """Backend groups with a weighted split and routing rules, sticky sessions, mirroring."""

    groups: Annotated[list[BackendGroup], Field(max_length=20)] = Field(default_factory=list)
    weights: Annotated[
        dict[str, Annotated[int, Field(ge=0, le=10000)]],
        Field(
            description="share of requests per group (a missing group gets 0); "
            "empty: everything to 'default'"
        ),
    ] = Field(default_factory=dict)
    rules: Annotated[
        list[GroupRule], Field(max_length=50, description="checked in order, before the weights")
    ] = Field(default_factory=list)
    sticky: StickySessions = StickySessions()
    mirror: Mirror | None = None

    @model_validator(mode="after")
    def _groups_known(self) -> TrafficSettings:
        names = [DEFAULT_GROUP]
        for index, group in enumerate(self.groups):
            if group.name in names:
                raise ValueError(f"traffic.groups[{index}].name: {group.name!r} is used twice")
            names.append(group.name)
        known = ", ".join(names)
        for name in self.weights:
            if name not in names:
                raise ValueError(
                    f"traffic.weights.{name}: unknown backend group {name!r} (groups: {known})"
                )
        if self.weights and sum(self.weights.values()) <= 0:
            raise ValueError("traffic.weights: the weights must add up to more than 0")
        for index, rule in enumerate(self.rules):
            if rule.group not in names:
                raise ValueError(
                    f"traffic.rules[{index}].group: unknown backend group {rule.group!r} "
                    f"(groups: {known})"
                )
        return self

    @property
    def routes_requests(self) -> bool:
        """Whether requests need a choice beyond the default group's balancing."""
        return bool(self.groups or self.rules or self.sticky.mode != StickyMode.OFF) or any(
            name != DEFAULT_GROUP for name in self.weights
        )


def _check_base_path(value: str, what: str) -> str:
    _check_path(value, what)
    if value == RESERVED_PREFIX or value.startswith(RESERVED_PREFIX + "/"):
        raise ValueError(f"{RESERVED_PREFIX} is reserved for the platform")
    return value


def _check_hosts(value: list[str]) -> list[str]:
    lowered = [h.lower() for h in value]
    for host in lowered:
        if not re.fullmatch(r"(\*\.)?[a-z0-9.-]+(:[0-9]{1,5})?", host):
            raise ValueError(f"{host!r} is not a host name")
    return lowered


class ClientRoute(Model):
    """A further base path (and host set) an API answers on, besides its own."""

    base_path: Annotated[str, Field(max_length=2000, description="client path prefix")]
    hosts: Annotated[
        list[str] | None,
        Field(description="virtual hosts of this route; left out: the API's hosts"),
    ] = None

    _base_path = field_validator("base_path")(
        classmethod(lambda cls, v: _check_base_path(v, "base_path"))
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_hosts(value)


class ApiProxy(Model):
    """An API proxy: the client route, the backend addresses and the policies between them."""

    name: Slug
    project: Slug = "default"
    description: Annotated[str, Field(max_length=1000)] = ""
    base_path: Annotated[
        str, Field(max_length=2000, description="client path prefix, unique in the project")
    ]
    hosts: Annotated[
        list[str], Field(description="virtual hosts; empty matches any Host header")
    ] = Field(default_factory=list)
    routes: Annotated[
        list[ClientRoute],
        Field(
            max_length=100,
            description="further base paths (each with its hosts) the API also answers on; a "
            "request is forwarded without the base path it came in on",
        ),
    ] = Field(default_factory=list)
    methods: Annotated[
        list[str],
        Field(description="allowed methods; empty = all but TRACE, which only a list admits"),
    ] = Field(default_factory=list)
    strip_base_path: Annotated[
        bool, Field(description="forward the path without the base path")
    ] = True
    endpoints: list[Endpoint] = Field(default_factory=list)
    endpoint_fallthrough: Annotated[
        bool,
        Field(
            description="a method no matching endpoint lists goes to the proxy's own route "
            "(without the endpoint's policies) instead of 405"
        ),
    ] = False
    backends: list[Backend] = Field(default_factory=list)
    balancing: Annotated[Balancing, Strict(False)] = Balancing.ROUND_ROBIN
    connection: ConnectionSettings = ConnectionSettings()
    health_check: HealthCheck = HealthCheck()
    passive_health: PassiveHealth = PassiveHealth()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    maintenance: Annotated[bool, Field(description="answer 503 without calling backends")] = False
    soap_version: Annotated[
        Literal["1.1", "1.2"] | None,
        Field(description="a SOAP API: the gateway's error answers are SOAP faults"),
    ] = None
    policies: PolicyLists = PolicyLists()
    capture: Annotated[
        CaptureSettings,
        Field(description="headers, query and bodies kept in traffic records, and their masking"),
    ] = CaptureSettings()
    traffic: Annotated[
        TrafficSettings,
        Field(description="backend groups, weighted split, routing rules, sticky sessions, mirror"),
    ] = TrafficSettings()

    _base_path = field_validator("base_path")(
        classmethod(lambda cls, v: _check_base_path(v, "base_path"))
    )
    _hosts = field_validator("hosts")(classmethod(lambda cls, v: _check_hosts(v)))

    _methods = field_validator("methods")(classmethod(lambda cls, v: _check_methods(v)))

    @model_validator(mode="after")
    def _needs_backends(self) -> ApiProxy:
        if not self.backends and not self.maintenance:
            raise ValueError("backends: at least one backend address is required")
        routes: dict[tuple[str, tuple[str, ...]], list[Endpoint]] = {}
        for endpoint in self.endpoints:
            routes.setdefault((endpoint.path, tuple(sorted(endpoint.methods))), []).append(endpoint)
        for shared in routes.values():
            if len(shared) == 1:
                continue
            if any(e.soap is None for e in shared):
                raise ValueError("endpoints: the same path and methods are declared twice")
            keys = [(e.soap.action, e.soap.element) for e in shared if e.soap is not None]
            if len(set(keys)) != len(keys):
                raise ValueError(
                    "endpoints: two SOAP operations on one path have the same action and element"
                )
        seen: set[tuple[str, str]] = set()
        for index, (base_path, hosts) in enumerate(self.client_routes()):
            for host in hosts or ["*"]:
                if (host, base_path) in seen:
                    where = "base_path" if index == 0 else f"routes[{index - 1}]"
                    raise ValueError(f"{where}: {base_path} on {host} is declared twice")
                seen.add((host, base_path))
        return self

    def client_routes(self) -> list[tuple[str, list[str]]]:
        """Every (base path, hosts) the API answers on: its own first, then ``routes``."""
        return [(self.base_path, self.hosts)] + [
            (r.base_path, self.hosts if r.hosts is None else r.hosts) for r in self.routes
        ]


def policy_entries(api: ApiProxy) -> Iterator[tuple[str, PolicySpec]]:
    """Every policy entry of an API with its scope: ``proxy`` or ``endpoints[i]``."""
    for side in ("request", "response", "error"):
        for spec in getattr(api.policies, side):
            yield "proxy", spec
    for index, endpoint in enumerate(api.endpoints):
        for side in ("request", "response", "error"):
            for spec in getattr(endpoint.policies, side):
                yield f"endpoints[{index}]", spec


def global_refs(api: ApiProxy) -> set[str]:
    """The names of the global policies the API refers to."""
    return {spec.global_ref for _, spec in policy_entries(api) if spec.global_ref is not None}
