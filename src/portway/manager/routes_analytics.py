"""``/api/v1/analytics`` (traffic aggregates) and ``/api/v1/requests`` (request search), both read
from the workers' request logs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from portway.config.management.analytics import RequestPage, TrafficAnalytics
from portway.manager.deps import Reader, Svc
from portway.manager.problems import ApiError
from portway.stores.traffic import AnalyticsQuery, SearchQuery

router = APIRouter()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC; by default the hour before now."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - timedelta(hours=1)
    if start >= end:
        raise ApiError(422, "validation_error", "start must be before end", "query.start")
    return start, end


def _status_range(status: str | None) -> tuple[int | None, int | None]:
    """``503`` is one status, ``5xx`` a class of them."""
    if status is None:
        return None, None
    if re.fullmatch(r"[1-5][0-9][0-9]", status):
        return int(status), int(status)
    if re.fullmatch(r"[1-5]xx", status, re.IGNORECASE):
        return int(status[0]) * 100, int(status[0]) * 100 + 99
    raise ApiError(
        422,
        "validation_error",
        "status must be a status code (503) or a class (5xx)",
        "query.status",
    )


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
    start, end = _time_range(start, end)
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


@router.get("/requests", tags=["analytics"], response_model=RequestPage)
async def search_requests(
    svc: Svc,
    _: Reader,
    correlation_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=256,
            description="records with this correlation id (several when a client reused it), "
            "or the record with this id",
        ),
    ] = None,
    start: Annotated[datetime | None, Query(description="default: one hour before end")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
    environment: Annotated[str | None, Query(max_length=63)] = None,
    api: Annotated[str | None, Query(max_length=63)] = None,
    consumer: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[
        str | None, Query(max_length=3, description="a status (503) or a class (5xx)")
    ] = None,
    min_latency_ms: Annotated[
        float | None, Query(ge=0, le=86_400_000, description="gateway total above this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    """Individual traffic records, newest first; ``next_cursor`` fetches the next page."""
    start, end = _time_range(start, end)
    status_min, status_max = _status_range(status)
    try:
        return await svc.analytics.search(
            SearchQuery(
                start=start,
                end=end,
                correlation_id=correlation_id,
                environment=environment,
                api=api,
                consumer=consumer,
                status_min=status_min,
                status_max=status_max,
                min_total_ms=min_latency_ms,
                limit=limit,
                cursor=cursor,
            )
        )
    except ValueError as exc:  # only the cursor can still be wrong here
        raise ApiError(422, "validation_error", str(exc), "query.cursor") from None
