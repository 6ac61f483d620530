"""The HTTP traffic sink: each batch is one POST of ``{"records": [...]}`` (JSON) to a receiver.

URLs: ``webhook+https://HOST/PATH`` or ``webhook+http://HOST:PORT/PATH``; options taken out of the
query string (the rest is sent on): ``token_file`` (a file holding a token sent as
``Authorization: Bearer``), ``ca_file`` (PEM bundle for https), ``timeout`` (seconds, default 10).

Delivery: any 2xx answer acknowledges the batch. Every other answer, and any transport error,
raises ``StoreUnavailable``: the shipper spools the batch and sends it again later, so nothing is
lost while the receiver is down or refuses — and a receiver sees a batch again when its answer was
lost. Records carry their ``id`` (the worker's, unique per request) for the receiver to drop
such repeats; the ``X-Portway-Batch`` header (a digest of the batch's ids) is the same on every
repeat of a batch.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from portway.errors import StoreUnavailable
from portway.stores._forwarding import ForwardingSink, forward
from portway.stores._traffic_common import record_json
from portway.stores.traffic import TrafficRecord

OPTIONS = ("token_file", "ca_file", "timeout")
BATCH_HEADER = "X-Portway-Batch"


class HttpTrafficSink(ForwardingSink):
    kind = "HTTP"

    def __init__(
        self, url: str, token_file: Path | None, ca_file: str | None, timeout: float
    ) -> None:
        self.url = url
        self.token_file = token_file
        self.ca_file = ca_file
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_url(cls, url: str) -> HttpTrafficSink:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"{url}: a host is required")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        options = {k: v for k, v in pairs if k in OPTIONS}
        rest = urlencode([(k, v) for k, v in pairs if k not in OPTIONS])
        target = urlunsplit(
            (parts.scheme.removeprefix("webhook+"), parts.netloc, parts.path, rest, "")
        )
        token = options.get("token_file")
        return cls(
            target,
            Path(token) if token else None,
            options.get("ca_file"),
            float(options.get("timeout", "10")),
        )

    async def open(self) -> None:
        """Nothing to install; the client connects with the first batch."""

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        await forward(records, self._post)

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self.ca_file:
                verify = ssl.create_default_context(cafile=self.ca_file)
            self._client = httpx.AsyncClient(
                verify=verify, trust_env=False, follow_redirects=False, timeout=self.timeout
            )
        return self._client

    async def _post(self, records: list[TrafficRecord]) -> None:
        body = record_json({"records": records})
        ids = "\n".join(str(r.get("id")) for r in records).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Portway-Shipper",
            BATCH_HEADER: hashlib.sha256(ids).hexdigest()[:32],
        }
        if self.token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
            except OSError as exc:
                raise StoreUnavailable(f"HTTP sink token_file: {exc}") from exc
        try:
            response = await self._client_now().post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"HTTP sink: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise StoreUnavailable(f"HTTP sink: the receiver answered {response.status_code}")
