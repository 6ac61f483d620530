"""The Kafka sink against a real broker (Apache Kafka in KRaft mode, started by the test): JSON
messages keyed by API, and the shipper's no-loss path while the broker is down."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from portway.deploy.lab_ca import lab_certificates
from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores.traffic import TrafficRecord, open_traffic_sink
from tests.stores.forwarding import record, started_shipper, wait_for
from tests.support.kafka import Kafka, kafka_server
from tests.support.servers import LOOPBACK, ServerMissing, closed_port, skip_or_fail


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kafka]:
    workdir = tmp_path_factory.mktemp("kafka")
    try:
        found = kafka_server(workdir, lab_certificates(workdir / "tls", ["localhost", LOOPBACK]))
    except ServerMissing as exc:
        skip_or_fail(exc)
    with found.server:
        yield found


def topic() -> str:
    return f"traffic-{uuid.uuid4().hex[:8]}"


async def consume(server: Kafka, name: str, count: int) -> list[tuple[bytes, TrafficRecord]]:
    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=f"{LOOPBACK}:{server.port}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[bytes, TrafficRecord]] = []
    try:
        while len(found) < count:
            batch = await consumer.getmany(timeout_ms=20_000)
            assert batch, f"only {len(found)} of {count} messages arrived"
            for messages in batch.values():
                found += [(m.key or b"", json.loads(m.value or b"")) for m in messages]
    finally:
        await consumer.stop()
    return found


async def test_records_arrive_as_json_keyed_by_api(kafka: Kafka) -> None:
    name = topic()
    sink = open_traffic_sink(f"kafka://{LOOPBACK}:{kafka.port}/{name}?client_id=gw-1")
    await sink.open()
    with pytest.raises(RejectedRecords):
        await sink.write([record(1), record(2), {"id": "x", "timestamp": "later"}])
    await sink.close()
    found = await consume(kafka, name, 2)
    assert found == [(b"orders", record(1)), (b"orders", record(2))]


async def test_tls_with_the_brokers_ca_and_refused_without_it(kafka: Kafka) -> None:
    name = topic()
    ca = kafka.server.workdir / "tls" / "ca.pem"
    sink = open_traffic_sink(f"kafka+ssl://{LOOPBACK}:{kafka.tls_port}/{name}?ca_file={ca}")
    await sink.write([record(7)])
    await sink.close()
    assert await consume(kafka, name, 1) == [(b"orders", record(7))]
    untrusted = open_traffic_sink(f"kafka+ssl://{LOOPBACK}:{kafka.tls_port}/{name}?timeout=3")
    with pytest.raises(StoreUnavailable):
        await untrusted.write([record(8)])
    await untrusted.close()


async def test_unreachable_cluster_is_unavailable() -> None:
    with closed_port() as port:
        sink = open_traffic_sink(f"kafka://{LOOPBACK}:{port}/t?timeout=2")
        with pytest.raises(StoreUnavailable, match="Kafka"):
            await sink.write([record(1)])
        await sink.close()
    with pytest.raises(ValueError, match="TOPIC"):
        open_traffic_sink(f"kafka://{LOOPBACK}:9092")
    with pytest.raises(ValueError, match="unknown Kafka option"):
        open_traffic_sink(f"kafka://{LOOPBACK}:9092/t?acks=0")


async def test_shipper_keeps_every_record_while_the_broker_is_down(
    kafka: Kafka, tmp_path: Path
) -> None:
    name = topic()
    sink = open_traffic_sink(f"kafka://{LOOPBACK}:{kafka.port}/{name}?timeout=3")
    kafka.server.stop()
    shipper = await started_shipper(sink, tmp_path / "spool", batch_size=40)
    for i in range(100):
        shipper.submit(record(i))
    await wait_for(lambda: shipper.stats().spooled == 100, "100 records in the spool", 60)
    kafka.server.start()
    assert await shipper.flush(timeout=90)
    stats = await shipper.close()
    await sink.close()
    ids = sorted({r["id"] for _, r in await consume(kafka, name, 100)})
    assert ids == [f"req-{i:05d}" for i in range(100)]
    assert (stats.delivered, stats.dropped) == (100, 0)
