"""``/api/v1/analytics``: traffic aggregates from the workers' request logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from portway.config.management.analytics import TrafficAnalytics
from portway.manager.deps import Reader, Svc
from portway.manager.problems import ApiError
from portway.stores.traffic import AnalyticsQuery

router = APIRouter()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/analytics", tags=["analytics"], response_model=TrafficAnalytics)
async def traffic_analytics(
    svc: Svc,
    _: Reader,
    start: Annotated[datetime | None, Query(description="default: one hour before end")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
    bucket_seconds: Annotated[int, Query(ge=1, le=86400)] = 60,
    environment: Annotated[str | None, Query(max_length=63)] = None,
    api: Annotated[str | None, Query(max_length=63)] = None,
    consumer: Annotated[str | None, Query(max_length=200)] = None,
    top_n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Counts by status, API and time bucket, top consumers and latency percentiles."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - timedelta(hours=1)
    if start >= end:
        raise ApiError(422, "validation_error", "start must be before end", "query.start")
    if (end - start) / timedelta(seconds=bucket_seconds) > 10_000:
        raise ApiError(
            422,
            "validation_error",
            "more than 10000 buckets; raise bucket_seconds",
            "query.bucket_seconds",
        )
    return await svc.analytics.query(
        AnalyticsQuery(
            start=start,
            end=end,
            bucket_seconds=bucket_seconds,
            environment=environment,
            api=api,
            consumer=consumer,
            top_n=top_n,
        )
    )
