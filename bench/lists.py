"""List benchmark: the management API's paged lists over 100,000 audit records and 10,000 consumers.

One manager process (SQLite store, loopback, no workers). Before it starts, the store is seeded
through the config store interface: 10,000 consumers created by the consumer service (each with
its audit record), then audit records up to 100,000 in all, spread over 10 actors, 6 actions and
targets under ``apis/``, ``consumers/`` and ``environments/``. Measured over HTTP with a token:

- the first page (100 items) of the audit log and of the consumers, median of 20 calls;
- a page deep in the list (after 90 % of it, reached by following ``next``), median of 20 calls;
- reading the whole list page by page (1,000 a page) and the slowest page on the way;
- the first page of each filter (actor, action, target prefix, and two at once), median of 20;
- the manager's resident memory (VmRSS) idle, after all of this, and its peak (VmHWM).

``run(results_dir)`` returns the rows and writes ``lists.md`` into ``results_dir``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench import machine
from bench.manager import lab, recorder, rss_mb, write_table
from portway.config.declarative import ConsumerSpec
from portway.manager import audit
from portway.manager.consumers import Consumers
from portway.stores.config_store import open_config_store

AUDIT = int(os.environ.get("BENCH_LIST_AUDIT", "100000"))
CONSUMERS = int(os.environ.get("BENCH_LIST_CONSUMERS", "10000"))
REPEATS = 20
ACTORS = [f"user{i}" for i in range(9)] + ["auditor"]  # "auditor" writes 1 record in 100
ACTIONS = ["api.create", "api.update", "api.delete", "policy.update", "env.update", "grant.add"]


def seed(store_url: str) -> None:
    async def fill() -> None:
        store = open_config_store(store_url)
        await store.open()
        try:
            consumers = Consumers(store)
            for i in range(CONSUMERS):
                await consumers.create(ConsumerSpec(name=f"app{i:05d}"), "seeder", check=False)
            for i in range(AUDIT - CONSUMERS):
                actor = "auditor" if i % 100 == 0 else ACTORS[i % 9]
                project = ("shop", "default", "billing")[i % 3]
                target = f"apis/{project}/svc{i % 500:03d}" if i % 4 else f"environments/env{i % 7}"
                await audit.record(
                    store, actor, ACTIONS[i % 6], target, {"n": i - 1}, {"n": i, "note": "x" * 40}
                )
        finally:
            await store.close()

    started = time.monotonic()
    asyncio.run(fill())
    print(
        f"seeded {AUDIT} audit records, {CONSUMERS} consumers in {time.monotonic() - started:.0f} s"
    )


def median_ms(call: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def get_page(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    response.raise_for_status()
    page: dict[str, Any] = response.json()
    return page


def walk(client: httpx.Client, path: str, limit: int) -> tuple[int, float, float, list[str]]:
    """Read a whole list: (items, seconds, slowest page in ms, the cursors on the way)."""
    cursors: list[str] = []
    count = 0
    slowest = 0.0
    cursor: str | None = None
    t0 = time.perf_counter()
    while True:
        p0 = time.perf_counter()
        page = get_page(client, path, limit=limit, **({"cursor": cursor} if cursor else {}))
        slowest = max(slowest, (time.perf_counter() - p0) * 1000)
        count += len(page["items"])
        cursor = page["next"]
        if cursor is None:
            return count, time.perf_counter() - t0, slowest, cursors
        cursors.append(cursor)


def run(results_dir: Path) -> list[dict[str, object]]:
    started_at = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    row = recorder("lists", rows)

    with lab(workers=0, seed=seed) as the_lab, the_lab.client() as client:
        pid = the_lab.pids["manager"]
        row("manager RSS, idle (store seeded)", rss_mb(pid), "MB")
        for path, total in (("/audit", AUDIT), ("/consumers", CONSUMERS)):
            name = path.strip("/")
            row(
                f"{name}: first page of 100",
                median_ms(partial(get_page, client, path, limit=100)),
                "ms",
                f"median of {REPEATS}",
            )
            count, seconds, slowest, cursors = walk(client, path, 1000)
            if count < total:
                raise RuntimeError(f"{path}: read {count} items, expected at least {total}")
            row(f"{name}: read all {count} items, 1,000 a page", seconds, "s")
            row(f"{name}: slowest page of 1,000 on the way", slowest, "ms")
            deep = {"cursor": cursors[int(len(cursors) * 0.9)]} if cursors else {}
            row(
                f"{name}: page of 100 after 90 % of the list",
                median_ms(partial(get_page, client, path, limit=100, **deep)),
                "ms",
                f"median of {REPEATS}",
            )
        for label, params in (
            ("actor=auditor (1 % of records)", {"actor": "auditor"}),
            ("action=api.update (15 %)", {"action": "api.update"}),
            ("target_prefix=apis/shop/ (25 %)", {"target_prefix": "apis/shop/"}),
            (
                "target_prefix=consumers/app0999 (10 records)",
                {"target_prefix": "consumers/app0999"},
            ),
            ("actor=auditor + action=api.create", {"actor": "auditor", "action": "api.create"}),
        ):
            row(
                f"audit filter {label}: first page of 100",
                median_ms(partial(get_page, client, "/audit", limit=100, **params)),
                "ms",
                f"median of {REPEATS}",
            )
        row("manager RSS after the list reads", rss_mb(pid), "MB")
        row("manager peak RSS (VmHWM)", rss_mb(pid, "VmHWM"), "MB", "includes argon2 of the admin")

    write_table(
        results_dir / "lists.md",
        f"List benchmark - {started_at:%Y-%m-%d %H:%M} UTC",
        f"{AUDIT} audit records and {CONSUMERS} consumers in the SQLite store; one manager "
        f"process; loopback. {machine()}.",
        rows,
    )
    return rows


if __name__ == "__main__":
    run(Path(__file__).parent / "results")
