"""The HTTP sink against a real HTTP receiver: batched JSON, bearer token, options kept out of
the forwarded URL, and the shipper's no-loss path while the receiver refuses or is gone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores.traffic import open_traffic_sink
from portway.stores.traffic_http import BATCH_HEADER
from tests.stores.forwarding import record, started_shipper, wait_for
from tests.support.receivers import HookReceiver
from tests.support.servers import closed_port


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    found = HookReceiver()
    yield found
    found.close()


def ids(receiver: HookReceiver) -> list[str]:
    return [r["id"] for h in receiver.accepted() for r in json.loads(h.body)["records"]]


async def test_batches_token_and_forwarded_query(receiver: HookReceiver, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    sink = open_traffic_sink(f"webhook+{receiver.url}/ingest?tenant=a&token_file={token}&timeout=5")
    await sink.open()
    with pytest.raises(RejectedRecords):
        await sink.write([record(1), record(2), {"id": "bad", "timestamp": "soon"}])
    await sink.close()
    [hook] = receiver.accepted()
    assert hook.path == "/ingest?tenant=a"
    assert hook.headers["Authorization"] == "Bearer s3cret-token"
    assert hook.headers["Content-Type"] == "application/json"
    assert len(hook.headers[BATCH_HEADER]) == 32
    assert json.loads(hook.body) == {"records": [record(1), record(2)]}


async def test_refusals_and_a_dead_receiver_are_unavailable() -> None:
    receiver = HookReceiver()
    receiver.status = 401
    sink = open_traffic_sink(f"webhook+{receiver.url}/")
    with pytest.raises(StoreUnavailable, match="401"):
        await sink.write([record(1)])
    receiver.close()
    with closed_port() as port:
        dead = open_traffic_sink(f"webhook+http://127.0.0.1:{port}/")
        with pytest.raises(StoreUnavailable, match="ConnectError"):
            await dead.write([record(1)])
        await dead.close()
    await sink.close()


async def test_shipper_keeps_every_record_while_the_receiver_refuses(
    receiver: HookReceiver, tmp_path: Path
) -> None:
    receiver.status = 503
    sink = open_traffic_sink(f"webhook+{receiver.url}/ingest")
    shipper = await started_shipper(sink, tmp_path / "spool", batch_size=40)
    for i in range(100):
        shipper.submit(record(i))
    await wait_for(lambda: shipper.stats().spooled == 100, "100 records in the spool")
    assert receiver.received()  # it was asked, and refused
    assert ids(receiver) == []
    receiver.status = 200
    assert await shipper.flush()
    stats = await shipper.close()
    await sink.close()
    assert sorted(ids(receiver)) == [f"req-{i:05d}" for i in range(100)]
    assert (stats.delivered, stats.dropped, stats.rejected) == (100, 0, 0)
