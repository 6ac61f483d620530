"""One "worker process" of the counter accuracy test.

    python -m tests.stores.counter_worker URL KEY CLIENTS ATTEMPTS LIMIT WINDOW

Opens one cache (as a gateway worker does), starts CLIENTS concurrent tasks that each make ATTEMPTS
increments of KEY, prints ``ready``, waits for a line on stdin (so every process starts at once),
then prints one JSON line: every count the cache returned, how many were admitted (count <= LIMIT)
and the errors.
"""

from __future__ import annotations

import asyncio
import json
import sys

from portway.stores.cache import open_cache


async def main(url: str, key: str, clients: int, attempts: int, limit: int, window: float) -> None:
    cache = open_cache(url)
    await cache.open()
    counts: list[int] = []
    errors: list[str] = []

    async def client() -> None:
        for _ in range(attempts):
            try:
                counts.append((await cache.increment(key, window=window)).count)
            except Exception as exc:
                errors.append(repr(exc))

    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*[client() for _ in range(clients)])
    await cache.close()
    admitted = sum(1 for c in counts if c <= limit)
    print(json.dumps({"counts": counts, "admitted": admitted, "errors": errors}), flush=True)


if __name__ == "__main__":
    url, key, clients, attempts, limit, window = sys.argv[1:7]
    asyncio.run(main(url, key, int(clients), int(attempts), int(limit), float(window)))
