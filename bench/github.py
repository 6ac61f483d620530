"""GitHub benchmark: import GitHub's public REST description, deploy it, route through it.

The document is ``api.github.com.json`` of the ``@octokit/openapi`` npm package (about 13 MB, 811
paths, 1,223 operations), fetched once with ``npm pack`` and kept under
``~/.cache/portway/github-openapi``. One manager (SQLite store, ``--import-max-bytes 16 MiB``), one
``portway worker`` process, the echo backend, loopback. Measured:

- importing it as ``portway api create --openapi`` sends it (the file's text in the body): with
  its example responses (refused: the API proxy would exceed one stored document, the answer says
  so), then with ``examples: false`` (the routes only): time, endpoints, manager RSS;
- deploying it: time until the worker answers through the new routes, worker RSS;
- routing: sequential GETs over one keep-alive connection to 50 different GitHub operations
  through the worker, against the same loop straight to the backend (client-bound: read the
  difference, not the absolute rate).

``run(results_dir)`` returns the rows and writes ``github.md`` into ``results_dir``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tarfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import machine
from bench.manager import lab, recorder, rss_mb, time_until_served, write_table

PACKAGE = "@octokit/openapi"
MEMBER = "package/generated/api.github.com.json"
CACHE = Path.home() / ".cache" / "portway" / "github-openapi"
IMPORT_CAP = 16 * 1024 * 1024
REQUESTS = int(os.environ.get("BENCH_GITHUB_REQUESTS", "2000"))


def github_description() -> Path:
    """The cached ``api.github.com.json``, fetched with ``npm pack`` the first time."""
    target = CACHE / "api.github.com.json"
    if target.exists():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed once to fetch @octokit/openapi (apt package npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "pack", PACKAGE, "--pack-destination", str(CACHE)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    tarball = max(CACHE.glob("octokit-openapi-*.tgz"), key=lambda p: p.stat().st_mtime)
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise RuntimeError(f"{tarball} has no {MEMBER}")
        partial = target.with_suffix(".part")
        partial.write_bytes(member.read())
        partial.replace(target)
    return target


def sample_paths(document: dict[str, object], count: int) -> list[str]:
    """``count`` GET operations of the document, spread over it, parameters filled in."""
    paths = document["paths"]
    assert isinstance(paths, dict)
    gets = [p for p, item in paths.items() if "get" in item and "..." not in p]
    step = max(1, len(gets) // count)
    return [re.sub(r"\{[^}]+\}", "x1", p) for p in gets[::step][:count]]


def rate(client: httpx.Client, base: str, paths: list[str]) -> tuple[float, float]:
    """(requests per second, median ms) of ``REQUESTS`` sequential GETs cycling over ``paths``."""
    times = []
    t0 = time.perf_counter()
    for i in range(REQUESTS):
        p0 = time.perf_counter()
        response = client.get(base + paths[i % len(paths)])
        if response.status_code != 200:
            raise RuntimeError(f"{base}{paths[i % len(paths)]} answered {response.status_code}")
        times.append((time.perf_counter() - p0) * 1000)
    return REQUESTS / (time.perf_counter() - t0), statistics.median(times)


def run(results_dir: Path) -> list[dict[str, object]]:
    started_at = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    row = recorder("github", rows)

    source = github_description()
    text = source.read_text()
    document = json.loads(text)
    row("document size", len(text.encode()) / 1024 / 1024, "MB", str(source))
    paths = sample_paths(document, 50)
    manager_args = ("--import-max-bytes", str(IMPORT_CAP))
    with lab(workers=1, manager_args=manager_args) as the_lab, the_lab.client() as client:
        manager_pid = the_lab.pids["manager"]
        row("manager RSS before the import", rss_mb(manager_pid), "MB")
        request = {
            "name": "github",
            "base_path": "/github",
            "backends": [{"url": the_lab.backend_url}],
            "document": text,
        }
        t0 = time.monotonic()
        refused = client.post("/projects/default/apis/import", json=request)
        if refused.status_code != 422:
            raise RuntimeError(f"import with examples answered {refused.status_code}")
        row(
            "import with example responses: refused (422) after",
            time.monotonic() - t0,
            "s",
            refused.json()["message"].split(";")[0],
        )
        t0 = time.monotonic()
        imported = client.post("/projects/default/apis/import", json=request | {"examples": False})
        imported.raise_for_status()
        row("import with examples false (routes only)", time.monotonic() - t0, "s")
        row("endpoints imported", len(imported.json()["endpoints"]), "endpoints")
        row("manager RSS after the import", rss_mb(manager_pid), "MB")

        probe = "/github" + paths[-1]
        t0 = time.monotonic()
        served: dict[int, float] = {}
        watcher = threading.Thread(
            target=lambda: served.update(time_until_served(the_lab.worker_ports, probe, t0))
        )
        watcher.start()
        deployed = client.post("/environments/bench/deployments", json={"api": "github"})
        deployed.raise_for_status()
        row("deploy: deployment request (push + ack)", time.monotonic() - t0, "s")
        watcher.join()
        row("deploy: until the worker serves the routes", max(served.values()), "s")
        row("manager RSS after the deployment", rss_mb(manager_pid), "MB")
        row("manager peak RSS (VmHWM)", rss_mb(manager_pid, "VmHWM"), "MB")
        row("worker RSS serving the GitHub API", rss_mb(the_lab.pids["worker-0"]), "MB")

        worker = f"http://127.0.0.1:{the_lab.worker_ports[0]}/github"
        with httpx.Client(trust_env=False, timeout=10.0) as traffic:
            direct_rps, direct_ms = rate(traffic, the_lab.backend_url, paths)
            routed_rps, routed_ms = rate(traffic, worker, paths)
        note = f"{REQUESTS} sequential GETs over {len(paths)} operations, one connection"
        row("straight to the backend", direct_rps, "req/s", note)
        row("straight to the backend, median", direct_ms, "ms")
        row("through the worker (1,222 routes)", routed_rps, "req/s", note)
        row("through the worker, median", routed_ms, "ms")
        row("worker RSS after routing", rss_mb(the_lab.pids["worker-0"]), "MB")

    write_table(
        results_dir / "github.md",
        f"GitHub REST description benchmark - {started_at:%Y-%m-%d %H:%M} UTC",
        f"`{MEMBER}` of `{PACKAGE}`; one manager (SQLite), one worker process, the echo "
        f"backend; loopback. {machine()}.",
        rows,
    )
    return rows


if __name__ == "__main__":
    run(Path(__file__).parent / "results")
