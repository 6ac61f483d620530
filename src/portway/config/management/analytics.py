"""Traffic analytics aggregates."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from portway.config.management.common import Answer


class ConsumerCount(Answer):
    consumer: str
    count: int


class BucketCount(Answer):
    start: str
    count: int
    errors: int


class TrafficAnalytics(Answer):
    total: int
    by_status: Annotated[dict[str, int], Field(description="requests by HTTP status")]
    by_api: dict[str, int]
    top_consumers: list[ConsumerCount]
    latency_ms: Annotated[dict[str, float], Field(description="p50, p90 and p99")]
    buckets: list[BucketCount]
