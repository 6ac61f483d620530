"""Helpers for policy unit tests: a fake clock, the embedded cache behind an outage switch, and
builders for contexts and single-policy pipelines."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from portway.config.models import PolicyLists, PolicySpec
from portway.config.revision import (
    ConsumerSnapshot,
    CredentialSnapshot,
    EnvironmentRevision,
    GrantSnapshot,
    SigningKeySnapshot,
    api_key_lookup,
)
from portway.errors import StoreUnavailable
from portway.policies.contract import HeaderMap, PolicyContext, RequestView, ResponseView
from portway.policies.pipeline import CompiledPipeline, compile_pipeline
from portway.policies.resources import PolicyServices
from portway.stores.cache import Cache, WindowCount
from portway.stores.cache_local import LocalCache

NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC).timestamp()  # a Wednesday, noon UTC


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingCache:
    """The embedded cache (``LocalCache`` on the fake clock) behind a switch: ``down = True``
    makes every call raise StoreUnavailable like an unreachable engine. It records the keys
    and TTLs written, so tests can check what policies store without reading its internals."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner: Cache = LocalCache(clock=clock)
        self.down = False
        self.sets: list[tuple[str, float | None]] = []
        self.increments: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("cache is down")

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._check()
        self.sets.append((key, ttl))
        await self.inner.set(key, value, ttl=ttl)

    async def delete(self, key: str) -> None:
        self._check()
        await self.inner.delete(key)

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        self._check()
        self.increments.append(key)
        return await self.inner.increment(key, window=window, amount=amount)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        self._check()
        return await self.inner.compare_and_set(key, expected, value, ttl=ttl)


def make_ctx(
    method: str = "GET",
    path: str = "/orders/42",
    *,
    headers: Sequence[tuple[str, str]] = (),
    query: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    client_ip: str = "192.0.2.10",
    api: str = "orders",
    project: str = "default",
    environment: str = "prod",
    path_params: dict[str, str] | None = None,
    scheme: str = "http",
    tls_peer_cert: dict[str, Any] | None = None,
) -> PolicyContext:
    async def read() -> bytes:
        return body

    return PolicyContext(
        request=RequestView(method, path, list(query), HeaderMap(headers), read),
        client_ip=client_ip,
        correlation_id="corr-123",
        environment=environment,
        project=project,
        api=api,
        endpoint=None,
        path_params=path_params or {"id": "42"},
        scheme=scheme,
        tls_peer_cert=tls_peer_cert,
    )


def make_response(
    status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
) -> ResponseView:
    async def read() -> bytes:
        return body

    return ResponseView(status, HeaderMap(headers), read)


@dataclass
class World:
    """Everything a test needs: clock, caches, services and a revision with consumers."""

    clock: FakeClock
    cache: RecordingCache
    local_cache: RecordingCache
    consumers: list[ConsumerSnapshot] = field(default_factory=list)
    global_policies: dict[str, PolicySpec] = field(default_factory=dict)
    transport: httpx.MockTransport | None = None
    services: PolicyServices | None = None
    nonce_secret: str = ""
    signing_keys: list[SigningKeySnapshot] = field(default_factory=list)

    def make_services(self) -> PolicyServices:
        if self.services is None:
            transport = self.transport

            def client() -> httpx.AsyncClient:
                assert transport is not None, "this test makes no HTTP calls"
                return httpx.AsyncClient(transport=transport)

            self.services = PolicyServices(
                environment="prod",
                cache=self.cache,
                local_cache=self.local_cache,
                clock=self.clock,
                http_client_factory=client,
            )
        return self.services

    def revision(self) -> EnvironmentRevision:
        return EnvironmentRevision(
            environment="prod",
            revision=1,
            created_at=datetime.fromtimestamp(NOW, UTC),
            consumers=self.consumers,
            global_policies=self.global_policies,
            nonce_secret=self.nonce_secret,
            signing_keys=self.signing_keys,
        )

    def pipeline(self, *scopes: PolicyLists, label: str = "default/orders") -> CompiledPipeline:
        return compile_pipeline(list(scopes), self.revision(), self.make_services(), label=label)

    def one(
        self, type_: str, config: dict[str, Any] | None = None, phase: str = "request", **spec: Any
    ) -> CompiledPipeline:
        entry = PolicySpec(name=spec.pop("name", type_), type=type_, config=config or {}, **spec)
        return self.pipeline(PolicyLists(**{phase: [entry]}))


def consumer(
    name: str = "alice",
    *,
    api_key: str | None = None,
    username: str | None = None,
    password_hash: str | None = None,
    roles: Sequence[str] = (),
    grants: Sequence[GrantSnapshot] | None = None,
    disabled: bool = False,
    credential_expires: datetime | None = None,
    credential_disabled: bool = False,
) -> ConsumerSnapshot:
    credentials = []
    if api_key is not None:
        credentials.append(
            CredentialSnapshot(
                id=f"{name}-key",
                kind="api_key",
                lookup=api_key_lookup(api_key),
                expires_at=credential_expires,
                disabled=credential_disabled,
            )
        )
    if username is not None:
        credentials.append(
            CredentialSnapshot(
                id=f"{name}-basic",
                kind="basic",
                lookup=username,
                secret_hash=password_hash,
                expires_at=credential_expires,
                disabled=credential_disabled,
            )
        )
    return ConsumerSnapshot(
        id=f"id-{name}",
        name=name,
        disabled=disabled,
        roles=list(roles),
        credentials=credentials,
        grants=list(grants) if grants is not None else [GrantSnapshot(api="orders")],
    )


def body_json(reply: Any) -> Any:
    import json

    return json.loads(reply.body)


def ceil(x: float) -> int:
    return math.ceil(x)


Handler = Callable[[httpx.Request], httpx.Response]
