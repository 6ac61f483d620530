"""The syslog sink against Debian's rsyslog (started by the test): RFC 5424 fields as rsyslog
parses them, over TCP and TLS, and the shipper's no-loss path while rsyslog is down and after it
restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.deploy.lab_ca import LabCertificates, lab_certificates
from portway.errors import RejectedRecords, StoreError, StoreUnavailable
from portway.stores.traffic import AnalyticsQuery, TrafficRecord, open_traffic_sink
from portway.stores.traffic_syslog import SyslogTrafficSink
from tests.stores.forwarding import record, started_shipper, wait_for
from tests.support.rsyslog import Rsyslog
from tests.support.servers import LOOPBACK


@pytest.fixture
def certs(tmp_path: Path) -> LabCertificates:
    return lab_certificates(tmp_path, ["localhost", LOOPBACK])


@pytest.fixture
def rsyslog(tmp_path: Path, certs: LabCertificates) -> Iterator[Rsyslog]:
    found = Rsyslog(tmp_path, certs)
    yield found
    found.server.close()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_rfc5424_messages_as_rsyslog_parses_them(
    rsyslog: Rsyslog, certs: LabCertificates, transport: str
) -> None:
    rsyslog.server.start()
    if transport == "tcp":
        url = f"syslog+tcp://{LOOPBACK}:{rsyslog.tcp_port}?facility=local3&app_name=gw"
    else:
        url = (
            f"syslog+tls://{LOOPBACK}:{rsyslog.tls_port}?facility=local3&app_name=gw"
            f"&ca_file={certs.ca_file}&server_name=localhost"
        )
    sink = open_traffic_sink(url)
    await sink.open()
    bad: TrafficRecord = {"id": "", "timestamp": "yesterday"}
    with pytest.raises(RejectedRecords):
        await sink.write([record(1), record(2, status=503), bad])
    await sink.close()
    await wait_for(lambda: len(rsyslog.lines()) == 2, "two messages")
    first, second = rsyslog.lines()
    assert first[:5] == ["worker-1", "gw", "traffic", "local3", "info"]
    assert second[4] == "warning"  # a 5xx answer
    assert json.loads(first[5]) == record(1)


async def test_untrusted_certificate_is_unavailable_not_sent_in_clear(
    rsyslog: Rsyslog, tmp_path: Path
) -> None:
    rsyslog.server.start()
    other = lab_certificates(tmp_path / "other-ca", ["localhost"])
    sink = SyslogTrafficSink.from_url(
        f"syslog+tls://{LOOPBACK}:{rsyslog.tls_port}?ca_file={other.ca_file}&server_name=localhost"
    )
    with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await sink.write([record(1)])
    await sink.close()
    assert rsyslog.lines() == []


async def test_shipper_spools_while_rsyslog_is_down_and_loses_nothing(
    rsyslog: Rsyslog, tmp_path: Path
) -> None:
    sink = open_traffic_sink(f"syslog+tcp://{LOOPBACK}:{rsyslog.tcp_port}")
    shipper = await started_shipper(sink, tmp_path / "spool", batch_size=50)
    for i in range(120):
        shipper.submit(record(i))
    await wait_for(lambda: shipper.stats().spooled == 120, "120 records in the spool")
    rsyslog.server.start()
    assert await shipper.flush()
    await wait_for(lambda: len(rsyslog.lines()) == 120, "the spooled records")

    rsyslog.server.restart()  # the shipper's open connection is now dead
    for i in range(120, 200):
        shipper.submit(record(i))
    assert await shipper.flush()
    await wait_for(lambda: len(rsyslog.lines()) == 200, "the records after the restart")
    stats = await shipper.close()
    await sink.close()
    assert sorted(rsyslog.ids()) == [f"req-{i:05d}" for i in range(200)]
    assert (stats.delivered, stats.dropped, stats.rejected) == (200, 0, 0)


async def test_options_and_analytics_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown syslog option"):
        open_traffic_sink("syslog+tcp://h:514?colour=red")
    with pytest.raises(ValueError, match="local0"):
        open_traffic_sink("syslog+tcp://h:514?facility=kern")
    sink = open_traffic_sink("syslog+tcp://h:514")
    from datetime import UTC, datetime

    moment = datetime.now(UTC)
    with pytest.raises(StoreError, match="cannot answer analytics"):
        await sink.query(AnalyticsQuery(start=moment, end=moment))
