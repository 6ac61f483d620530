"""What the traffic sinks share: the records' JSON, record checks, time handling, buckets and
percentiles.

Analytics semantics, identical on every backend:
- a record belongs to ``[start, end)`` by its ``timestamp``; ``environment``/``api``/``consumer``
  filters compare equal;
- an *error* is a record with ``status >= 400``;
- buckets are ``bucket_seconds`` wide, aligned on the Unix epoch, and every bucket that overlaps
  ``[start, end)`` is returned, empty ones with zeros;
- ``top_consumers`` orders by count, then by name; records without a consumer are not ranked;
- latency percentiles are over ``total_ms``: exact on SQLite (linear interpolation between closest
  ranks), estimated by t-digest on Elasticsearch.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson

from portway.stores.traffic import AnalyticsQuery, Bucket, SearchQuery, TrafficRecord

MAX_ID_LENGTH = 256
MAX_BUCKETS = 10_000
MAX_PAGE = 500
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
"""Latency percentiles over the whole range (p90 kept for the clients that read it)."""
BUCKET_PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))
"""Latency percentiles in each time bucket."""


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_JSON = json.JSONEncoder(separators=(",", ":"), default=str).encode


def record_json(value: object) -> bytes:
    """A record (or a batch of them) as compact JSON, values JSON does not know as ``str``: how
    every sink and the spool write records. orjson, ~5x faster than the standard encoder per
    record; what it refuses (an integer beyond 64 bits) goes through the standard one."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _JSON(value).encode()


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def check_record(record: Mapping[str, object]) -> tuple[str, int]:
    """The record's id and timestamp (epoch ms); ``ValueError`` saying what is wrong."""
    rid = record.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > MAX_ID_LENGTH:
        raise ValueError(f"id must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        raise ValueError("timestamp must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueError(f"timestamp {stamp!r} is not ISO 8601") from None
    status = record.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise ValueError("status must be an integer")
    total = record.get("total_ms")
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total)
    ):
        raise ValueError("total_ms must be a finite number")
    return rid, epoch_ms(moment)


def split_records(
    records: Sequence[TrafficRecord],
) -> tuple[list[tuple[str, int, TrafficRecord]], list[tuple[str, str]]]:
    """Valid records as ``(id, ms, record)``, deduplicated by id; rejected ones as ``(id, why)``."""
    valid: dict[str, tuple[str, int, TrafficRecord]] = {}
    rejected: list[tuple[str, str]] = []
    for record in records:
        try:
            rid, ms = check_record(record)
        except ValueError as exc:
            raw = record.get("id")
            rejected.append((raw if isinstance(raw, str) else "", str(exc)))
            continue
        valid.setdefault(rid, (rid, ms, record))
    return list(valid.values()), rejected


def bucket_ms(query: AnalyticsQuery) -> int:
    if query.bucket_seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    return query.bucket_seconds * 1000


def check_query(query: AnalyticsQuery) -> tuple[int, int, int]:
    """``(start_ms, end_ms, bucket_ms)``; refuses empty ranges and too many buckets."""
    start, end, width = epoch_ms(query.start), epoch_ms(query.end), bucket_ms(query)
    if end <= start:
        raise ValueError("query end must be after its start")
    if (end - start) // width > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} buckets: widen bucket_seconds or the range")
    if query.top_n < 1:
        raise ValueError("top_n must be at least 1")
    return start, end, width


def fill_buckets(
    start_ms: int,
    end_ms: int,
    width: int,
    counts: Mapping[int, tuple[int, int]],
    latencies: Mapping[int, dict[str, float]] | None = None,
) -> list[Bucket]:
    """Every epoch-aligned bucket overlapping ``[start, end)``; ``counts`` maps bucket start (ms) to
    ``(count, errors)``, ``latencies`` to the bucket's ``BUCKET_PERCENTILES`` (absent: none)."""
    first = (start_ms // width) * width
    latencies = latencies or {}
    return [
        Bucket(from_ms(b), *counts.get(b, (0, 0)), latency_ms=latencies.get(b, {}))
        for b in range(first, end_ms, width)
    ]


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over sorted values."""
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def percentiles(ordered: Sequence[float], which: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``{name: value}`` for each ``(name, p)`` of ``which``; ``{}`` when there are no values."""
    return {name: percentile(ordered, p) for name, p in which} if ordered else {}


def top(counts: Mapping[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# --- request search -----------------------------------------------------------------------------
# Pages are ordered by (timestamp ms, id) descending; a cursor is the (ms, id) of the last record
# of the previous page, and the next page holds what sorts strictly after it.


def encode_cursor(ms: int, rid: str) -> str:
    raw = json.dumps([ms, rid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        ms, rid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("cursor is not one this API issued") from None
    if isinstance(ms, bool) or not isinstance(ms, int) or not isinstance(rid, str):
        raise ValueError("cursor is not one this API issued")
    return ms, rid


def check_search(query: SearchQuery) -> tuple[int, int, tuple[int, str] | None]:
    """``(start_ms, end_ms, after)``, where ``after`` is the decoded cursor."""
    start, end = epoch_ms(query.start), epoch_ms(query.end)
    if end <= start:
        raise ValueError("query end must be after its start")
    if not 1 <= query.limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if query.min_total_ms is not None and not math.isfinite(query.min_total_ms):
        raise ValueError("min_total_ms must be a finite number")
    return start, end, None if query.cursor is None else decode_cursor(query.cursor)


def search_terms(query: SearchQuery) -> list[tuple[str, str]]:
    """The equality filters of a search that are set, as ``(field, value)``; not the correlation
    id, which a sink matches against ``correlation_id`` or ``id`` (records written before
    2026-12-03 have only an id, which was the correlation id)."""
    pairs = (
        ("environment", query.environment),
        ("api", query.api),
        ("consumer", query.consumer),
    )
    return [(name, value) for name, value in pairs if value is not None]


def page_of(
    rows: Sequence[tuple[int, str, TrafficRecord]], limit: int
) -> tuple[list[TrafficRecord], str | None]:
    """The records of a page fetched with ``limit + 1`` rows and the cursor of the next one."""
    if len(rows) <= limit:
        return [r for _, _, r in rows], None
    ms, rid, _ = rows[limit - 1]
    return [r for _, _, r in rows[:limit]], encode_cursor(ms, rid)
