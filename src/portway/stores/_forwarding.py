"""What the forwarding traffic sinks (syslog, HTTP, Kafka) share: they pass records on to another
system and keep nothing to query, so the manager's analytics read a SQLite or Elasticsearch store.

``forward`` sends the valid records of a batch and then reports the malformed ones with
``RejectedRecords`` (counted by the shipper, never retried), exactly as the storing sinks do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from portway.errors import RejectedRecords, StoreError
from portway.stores._traffic_common import split_records
from portway.stores.traffic import (
    AnalyticsQuery,
    AnalyticsResult,
    SearchPage,
    SearchQuery,
    TrafficRecord,
)

Send = Callable[[list[TrafficRecord]], Awaitable[None]]


async def forward(records: Sequence[TrafficRecord], send: Send) -> None:
    valid, rejected = split_records(records)
    if valid:
        await send([record for _, _, record in valid])
    if rejected:
        raise RejectedRecords(rejected)


class ForwardingSink:
    """Base of the sinks that only forward: analytics queries are refused with a clear error."""

    kind = "forwarding"

    async def query(self, query: AnalyticsQuery) -> AnalyticsResult:
        raise self._refusal("analytics")

    async def search(self, query: SearchQuery) -> SearchPage:
        raise self._refusal("request searches")

    def _refusal(self, what: str) -> StoreError:
        return StoreError(
            f"the {self.kind} traffic sink forwards records and cannot answer {what}; "
            "point the manager's logs at sqlite:// or elasticsearch://"
        )
