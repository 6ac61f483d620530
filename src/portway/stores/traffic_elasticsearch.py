"""The production traffic sink: an Elasticsearch data stream, through the official async client.

``open()`` installs what the stream needs, idempotently:

- a lifecycle: an ILM policy ``<stream>`` (hot: roll over at ``rollover_age`` or
  ``rollover_size`` per primary shard; delete ``retention`` after rollover) when the cluster has
  ILM. Distributions without ILM (the integ-test zip the tests run on) get the same rules applied
  by Portway itself: ``maintain()`` rolls the stream over and deletes backing indices older than
  the retention, every ``maintenance_interval`` seconds in the background (``lifecycle=portway``);
- an index template ``<stream>`` (priority 200) that makes ``<stream>`` a data stream, with the
  mappings of ``TrafficRecord`` (unknown fields kept in ``_source``, not indexed; ``detail`` not
  indexed) and the lifecycle setting.

The data stream itself is created by the first write. Records are written with ``_bulk``
``create`` operations whose ``_id`` is the record id: a record written twice is refused by
Elasticsearch with a 409 for that item, which counts as success, so retried batches never
duplicate. Caveat: ids are unique per backing index, so a retry that straddles a rollover could
store a record twice; rollovers are daily by default, retries are seconds apart.

URL: ``elasticsearch://[user:password@]host:9200[,host2:9200]?stream=portway-traffic`` (plain
HTTP; ``elasticsearch+https://`` or ``https://`` for TLS) with options ``timeout`` (seconds per
call, default 10), ``replicas`` (1), ``shards`` (1), ``retention`` (30d), ``rollover_age`` (1d),
``rollover_size`` (50gb), ``lifecycle`` (auto|ilm|portway), ``maintenance_interval`` (300, 0 = off),
``refresh`` (false; true makes every write visible to queries at once — for tests), ``api_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from portway.errors import RejectedRecords, StoreError, StoreUnavailable
from portway.stores._traffic_common import (
    BUCKET_PERCENTILES,
    PERCENTILES,
    check_query,
    check_search,
    fill_buckets,
    from_ms,
    page_of,
    search_terms,
    split_records,
    top,
)
from portway.stores.traffic import (
    AnalyticsQuery,
    AnalyticsResult,
    SearchPage,
    SearchQuery,
    TrafficRecord,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TEMPLATE_VERSION = 4
_TIME_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_KEYWORDS = (
    "id",
    "correlation_id",
    "environment",
    "project",
    "api",
    "endpoint",
    "method",
    "consumer",
    "backend",
    "worker",
    "client_ip",
    "forwarded_for",
    "credential",
    "circuit",
    "denied_by",
    "policies",
)


def time_ms(text: str) -> int:
    """An Elasticsearch time value (``30d``, ``12h``, ``500ms``) in milliseconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time value like 30d, 12h, 10m, 30s or 500ms")
    return int(match.group(1)) * _TIME_UNITS[match.group(2)]


def mappings() -> dict[str, Any]:
    properties: dict[str, Any] = {"@timestamp": {"type": "date"}}
    for name in _KEYWORDS:
        properties[name] = {"type": "keyword", "ignore_above": 1024}
    properties["path"] = {"type": "keyword", "ignore_above": 4096}
    properties["error"] = {"type": "keyword", "ignore_above": 1024}
    properties["backend_path"] = {"type": "keyword", "ignore_above": 4096}
    for name in ("status", "backend_status"):
        properties[name] = {"type": "short"}
    for name in ("retries", "failovers", "revision"):
        properties[name] = {"type": "integer"}
    for name in ("total_ms", "pipeline_ms", "backend_ms", "connect_ms", "first_byte_ms"):
        properties[name] = {"type": "float"}
    for name in (
        "request_bytes",
        "response_bytes",
        "backend_request_bytes",
        "backend_response_bytes",
    ):
        properties[name] = {"type": "long"}
    properties["shadow"] = {
        "properties": {
            "policy": {"type": "keyword", "ignore_above": 1024},
            "would": {"type": "keyword"},
            "status": {"type": "short"},
            "code": {"type": "keyword", "ignore_above": 1024},
        }
    }
    properties["variables"] = {"type": "flattened", "ignore_above": 1024}
    properties["detail"] = {"type": "object", "enabled": False}
    return {"dynamic": False, "properties": properties}


class ElasticsearchTrafficSink:
    def __init__(
        self,
        hosts: Sequence[str],
        *,
        stream: str = "portway-traffic",
        timeout: float = 10.0,
        replicas: int = 1,
        shards: int = 1,
        retention: str = "30d",
        rollover_age: str = "1d",
        rollover_size: str = "50gb",
        lifecycle: Literal["auto", "ilm", "portway"] = "auto",
        maintenance_interval: float = 300.0,
        refresh: bool = False,
        basic_auth: tuple[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", stream) or stream.startswith(".ds-"):
            raise ValueError(f"{stream!r} is not a valid data stream name")
        time_ms(retention)
        time_ms(rollover_age)
        self._hosts = list(hosts)
        self.stream = stream
        self._timeout = timeout
        self._replicas = replicas
        self._shards = shards
        self._retention = retention
        self._rollover_age = rollover_age
        self._rollover_size = rollover_size
        self._lifecycle_wanted = lifecycle
        self.lifecycle: Literal["ilm", "portway"] | None = None
        self._maintenance_interval = maintenance_interval
        self._refresh = refresh
        self._auth: dict[str, Any] = {}
        if basic_auth:
            self._auth["basic_auth"] = basic_auth
        if api_key:
            self._auth["api_key"] = api_key
        self._es: AsyncElasticsearch | None = None
        self._maintenance: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> ElasticsearchTrafficSink:
        parts = urlsplit(url)
        scheme = "https" if parts.scheme in ("https", "elasticsearch+https") else "http"
        netloc = parts.netloc.rsplit("@", 1)[-1]
        hosts = [f"{scheme}://{h}" for h in netloc.split(",") if h]
        opts = dict(parse_qsl(parts.query))
        lifecycle = opts.get("lifecycle", "auto")
        if lifecycle not in ("auto", "ilm", "portway"):
            raise ValueError(f"lifecycle={lifecycle!r} is not one of auto, ilm, portway")
        return cls(
            hosts or [f"{scheme}://127.0.0.1:9200"],
            stream=opts.get("stream", "portway-traffic"),
            timeout=float(opts.get("timeout", 10.0)),
            replicas=int(opts.get("replicas", 1)),
            shards=int(opts.get("shards", 1)),
            retention=opts.get("retention", "30d"),
            rollover_age=opts.get("rollover_age", "1d"),
            rollover_size=opts.get("rollover_size", "50gb"),
            lifecycle=lifecycle,  # type: ignore[arg-type]  # checked just above
            maintenance_interval=float(opts.get("maintenance_interval", 300.0)),
            refresh=opts.get("refresh", "false").lower() in ("1", "true", "yes"),
            basic_auth=(parts.username, parts.password or "") if parts.username else None,
            api_key=opts.get("api_key"),
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _client(self) -> AsyncElasticsearch:
        if self._es is None:
            raise StoreUnavailable("traffic sink is not open")
        return self._es

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except TimeoutError as exc:
            raise StoreUnavailable(f"elasticsearch: no answer within {self._timeout}s") from exc
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise StoreUnavailable(f"elasticsearch: {exc}") from exc
            raise StoreError(f"elasticsearch: {exc}") from exc
        except TransportError as exc:
            raise StoreUnavailable(f"elasticsearch: {exc}") from exc

    async def open(self) -> None:
        if self._es is not None:
            return
        self._es = AsyncElasticsearch(
            self._hosts,
            request_timeout=self._timeout,
            max_retries=0,
            retry_on_timeout=False,
            **self._auth,
        )
        try:
            self.lifecycle = await self._install_lifecycle()
            await self._install_template()
        except BaseException:
            await self.close()
            raise
        if self.lifecycle == "portway" and self._maintenance_interval > 0:
            self._maintenance = asyncio.create_task(self._maintain_forever())

    async def close(self) -> None:
        task, self._maintenance = self._maintenance, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        es, self._es = self._es, None
        if es is not None:
            await es.close()

    async def _install_lifecycle(self) -> Literal["ilm", "portway"]:
        if self._lifecycle_wanted == "portway":
            return "portway"
        es = self._client()
        policy = {
            "_meta": {"managed_by": "portway", "version": TEMPLATE_VERSION},
            "phases": {
                "hot": {
                    "actions": {
                        "rollover": {
                            "max_age": self._rollover_age,
                            "max_primary_shard_size": self._rollover_size,
                        }
                    }
                },
                "delete": {"min_age": self._retention, "actions": {"delete": {}}},
            },
        }
        try:
            await self._call(es.ilm.put_lifecycle(name=self.stream, policy=policy))
        except StoreError as exc:
            # No ILM in this distribution: Elasticsearch has no handler for the endpoint.
            if "no handler found" not in str(exc) or self._lifecycle_wanted == "ilm":
                raise
            log.info("no ILM on this cluster: Portway applies the lifecycle of %s", self.stream)
            return "portway"
        return "ilm"

    async def _install_template(self) -> None:
        settings: dict[str, Any] = {
            "number_of_shards": self._shards,
            "number_of_replicas": self._replicas,
        }
        if self.lifecycle == "ilm":
            settings["index.lifecycle.name"] = self.stream
        await self._call(
            self._client().indices.put_index_template(
                name=self.stream,
                index_patterns=[self.stream],
                data_stream={},
                priority=200,
                template={"settings": settings, "mappings": mappings()},
                meta={"managed_by": "portway", "version": TEMPLATE_VERSION},
            )
        )
        # The template shapes backing indices made from now on; fields it gained since the
        # stream's write index was made are added to the stream too (an existing field's mapping
        # is never changed, and a stream not made yet has nothing to update). Not a reason to
        # refuse records: without it the new fields are searchable from the next backing index.
        try:
            await self._call(
                self._client().indices.put_mapping(
                    index=self.stream, properties=mappings()["properties"]
                )
            )
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if "index_not_found" not in str(exc):
                log.warning(
                    "traffic stream %s: new fields not added to its mapping (%s); they are "
                    "searchable from its next backing index",
                    self.stream,
                    exc,
                )

    # -- lifecycle without ILM ------------------------------------------------------------------

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(self._maintenance_interval)
            try:
                await self.maintain()
            except StoreError as exc:
                log.warning("traffic stream %s maintenance failed: %s", self.stream, exc)

    async def maintain(self) -> dict[str, Any]:
        """Roll the stream over when its write index is too old or too big, then delete backing
        indices rolled over longer than ``retention`` ago: what ILM does, for clusters without."""
        es = self._client()
        rolled = False
        try:
            answer = await self._call(
                es.indices.rollover(
                    alias=self.stream,
                    conditions={
                        "max_age": self._rollover_age,
                        "max_primary_shard_size": self._rollover_size,
                    },
                )
            )
            rolled = bool(answer.get("rolled_over"))
        except StoreError as exc:
            if "index_not_found" in str(exc) or "resource_not_found" in str(exc):
                return {"rolled_over": False, "deleted": []}  # nothing written yet
            raise
        resolved = await self._call(es.indices.resolve_index(name=self.stream))
        streams = [d for d in resolved.get("data_streams", []) if d["name"] == self.stream]
        backing: list[str] = streams[0]["backing_indices"] if streams else []
        if len(backing) < 2:
            return {"rolled_over": rolled, "deleted": []}
        settings = await self._call(
            es.indices.get_settings(index=",".join(backing), name="index.creation_date")
        )
        created = {
            name: int(body["settings"]["index"]["creation_date"]) for name, body in settings.items()
        }
        now = int(time.time() * 1000)
        expired = [
            index
            for index, successor in itertools.pairwise(backing)
            if now - created[successor] >= time_ms(self._retention)
        ]
        if expired:
            await self._call(es.indices.delete(index=",".join(expired)))
            log.info("traffic stream %s: deleted %s", self.stream, ", ".join(expired))
        return {"rolled_over": rolled, "deleted": expired}

    # -- the interface ----------------------------------------------------------------------------

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        valid, rejected = split_records(records)
        operations: list[dict[str, Any]] = []
        for rid, ms, record in valid:
            doc: dict[str, Any] = dict(record)  # ``timestamp`` kept as written, not indexed
            doc["@timestamp"] = ms
            operations.append({"create": {"_index": self.stream, "_id": rid}})
            operations.append(doc)
        if operations:
            response = await self._call(
                self._client().bulk(
                    operations=operations, refresh="true" if self._refresh else "false"
                )
            )
            if response.get("errors"):
                retry = 0
                for item in response["items"]:
                    result = item["create"]
                    status = int(result.get("status", 500))
                    if status < 300 or status == 409:  # 409: stored by an earlier attempt
                        continue
                    if status == 429 or status >= 500:
                        retry += 1
                    else:
                        reason = result.get("error", {}).get("reason", f"status {status}")
                        rejected.append((str(result.get("_id", "")), str(reason)))
                if retry:
                    raise StoreUnavailable(
                        f"elasticsearch: {retry} of {len(valid)} records not stored yet (busy)"
                    )
        if rejected:
            raise RejectedRecords(rejected)

    async def query(self, query: AnalyticsQuery) -> AnalyticsResult:
        start, end, width = check_query(query)
        filters: list[dict[str, Any]] = [
            {"range": {"@timestamp": {"gte": start, "lt": end, "format": "epoch_millis"}}}
        ]
        for field in ("environment", "api", "consumer"):
            value = getattr(query, field)
            if value is not None:
                filters.append({"term": {field: value}})
        aggs: dict[str, Any] = {
            "by_status": {"terms": {"field": "status", "size": 1000}},
            "by_api": {"terms": {"field": "api", "size": 10_000}},
            "consumers": {
                "terms": {
                    "field": "consumer",
                    "size": query.top_n,
                    "shard_size": max(100, query.top_n * 10),
                    "order": [{"_count": "desc"}, {"_key": "asc"}],
                }
            },
            "latency": _percentiles_agg(PERCENTILES),
            "buckets": {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": f"{query.bucket_seconds}s",
                    "min_doc_count": 1,
                },
                "aggs": {
                    "errors": {"filter": {"range": {"status": {"gte": 400}}}},
                    "latency": _percentiles_agg(BUCKET_PERCENTILES),
                },
            },
        }
        response = await self._call(
            self._client().search(
                index=self.stream,
                size=0,
                track_total_hits=True,
                query={"bool": {"filter": filters}},
                aggs=aggs,
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        )
        total = int(response["hits"]["total"]["value"])
        found = response.get("aggregations")
        if not found or total == 0:
            return AnalyticsResult(total=total, buckets=fill_buckets(start, end, width, {}))
        return AnalyticsResult(
            total=total,
            by_status={int(b["key"]): int(b["doc_count"]) for b in found["by_status"]["buckets"]},
            by_api={str(b["key"]): int(b["doc_count"]) for b in found["by_api"]["buckets"]},
            top_consumers=top(
                {str(b["key"]): int(b["doc_count"]) for b in found["consumers"]["buckets"]},
                query.top_n,
            ),
            latency_ms=_percentile_values(found["latency"], PERCENTILES),
            buckets=fill_buckets(
                start,
                end,
                width,
                {
                    int(b["key"]): (int(b["doc_count"]), int(b["errors"]["doc_count"]))
                    for b in found["buckets"]["buckets"]
                },
                {
                    int(b["key"]): _percentile_values(b["latency"], BUCKET_PERCENTILES)
                    for b in found["buckets"]["buckets"]
                },
            ),
        )

    async def search(self, query: SearchQuery) -> SearchPage:
        start, end, after = check_search(query)
        filters: list[dict[str, Any]] = [
            {"range": {"@timestamp": {"gte": start, "lt": end, "format": "epoch_millis"}}}
        ]
        filters += [{"term": {name: value}} for name, value in search_terms(query)]
        if query.correlation_id is not None:
            either = [{"term": {"correlation_id": query.correlation_id}}]
            either.append({"term": {"id": query.correlation_id}})
            filters.append({"bool": {"should": either, "minimum_should_match": 1}})
        status: dict[str, int] = {}
        if query.status_min is not None:
            status["gte"] = query.status_min
        if query.status_max is not None:
            status["lte"] = query.status_max
        if status:
            filters.append({"range": {"status": status}})
        if query.min_total_ms is not None:
            filters.append({"range": {"total_ms": {"gt": query.min_total_ms}}})
        extra: dict[str, Any] = {}
        if after is not None:
            extra["search_after"] = [after[0], after[1]]
        response = await self._call(
            self._client().search(
                index=self.stream,
                size=query.limit + 1,
                query={"bool": {"filter": filters}},
                sort=[{"@timestamp": "desc"}, {"id": "desc"}],
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
                **extra,
            )
        )
        rows: list[tuple[int, str, TrafficRecord]] = []
        for hit in response["hits"]["hits"]:
            ms, rid = int(hit["sort"][0]), str(hit["sort"][1])
            source: dict[str, Any] = hit["_source"]
            stamp = source.pop("@timestamp", ms)
            source.setdefault("timestamp", from_ms(int(stamp)).isoformat())
            rows.append((ms, rid, source))  # type: ignore[arg-type]  # written as TrafficRecord
        records, cursor = page_of(rows, query.limit)
        return SearchPage(records, cursor)


def _percentiles_agg(which: Sequence[tuple[str, float]]) -> dict[str, Any]:
    return {"percentiles": {"field": "total_ms", "percents": [p for _, p in which]}}


def _percentile_values(agg: dict[str, Any], which: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``{name: value}`` from a ``percentiles`` aggregation; ``{}`` when no document had a
    ``total_ms`` (Elasticsearch then answers null for each percent)."""
    values = agg["values"]
    return {
        name: float(values[f"{p:.1f}"]) for name, p in which if values.get(f"{p:.1f}") is not None
    }
