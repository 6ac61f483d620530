"""The Kafka traffic sink: each record is one JSON message on a topic (aiokafka's producer).

URLs: ``kafka://HOST:PORT[,HOST:PORT…]/TOPIC`` (plaintext) or ``kafka+ssl://…/TOPIC`` (TLS), with
options ``ca_file`` (PEM bundle for TLS), ``client_id`` (default ``portway``) and ``timeout``
(seconds a batch may take to be acknowledged, default 10). The message key is the record's
``api`` (so one API's records keep their order in one partition), or its ``id`` without one.

Delivery: the producer waits for every in-sync replica (``acks=all``) and is idempotent (no
duplicates from its own retries). A batch that is not acknowledged in time, or a cluster that
cannot be reached, raises ``StoreUnavailable``: the shipper spools the batch and sends it again, so
nothing is lost; messages of a half-acknowledged batch are then sent twice — consumers drop
repeats by the record's ``id``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from portway.errors import StoreUnavailable
from portway.stores._forwarding import ForwardingSink, forward
from portway.stores._traffic_common import record_json
from portway.stores.traffic import TrafficRecord

OPTIONS = {"ca_file", "client_id", "timeout"}


class KafkaTrafficSink(ForwardingSink):
    kind = "Kafka"

    def __init__(
        self,
        servers: list[str],
        topic: str,
        *,
        tls: bool = False,
        ca_file: str | None = None,
        client_id: str = "portway",
        timeout: float = 10.0,
    ) -> None:
        self.servers = servers
        self.topic = topic
        self.tls = tls
        self.ca_file = ca_file
        self.client_id = client_id
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def from_url(cls, url: str) -> KafkaTrafficSink:
        parts = urlsplit(url)
        servers = [s for s in parts.netloc.split(",") if s]
        topic = parts.path.strip("/")
        if not servers or not topic or "/" in topic:
            raise ValueError(f"{url}: expected kafka://HOST:PORT[,HOST:PORT]/TOPIC")
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - OPTIONS
        if unknown:
            raise ValueError(f"{url}: unknown Kafka option(s) {sorted(unknown)}")
        return cls(
            servers,
            topic,
            tls=parts.scheme == "kafka+ssl",
            ca_file=options.get("ca_file"),
            client_id=options.get("client_id", "portway"),
            timeout=float(options.get("timeout", "10")),
        )

    async def open(self) -> None:
        """Nothing to install; the producer connects with the first batch (and again after a
        failure), so a worker starts while the cluster is unreachable."""

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        await forward(records, self._send)

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        millis = int(self.timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=millis,
            security_protocol="SSL" if self.tls else "PLAINTEXT",
            ssl_context=context,
        )
        try:
            await asyncio.wait_for(producer.start(), self.timeout)
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        return producer

    async def _send(self, records: list[TrafficRecord]) -> None:
        try:
            producer = await self._started()
            pending = [
                await producer.send(
                    self.topic,
                    value=record_json(r),
                    key=str(r.get("api") or r.get("id")).encode(),
                )
                for r in records
            ]
            await asyncio.wait_for(asyncio.gather(*pending), self.timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.close()  # a fresh producer next time: no half-failed state carried over
            where = ",".join(self.servers)
            raise StoreUnavailable(f"Kafka {where}: {type(exc).__name__}: {exc}") from exc
