"""Manager benchmark: deploy 1,000 API proxies to an environment of 2 real workers.

Real processes on loopback: one manager (SQLite store), two ``portway worker`` processes (one
process each) and the echo backend. Measured:

- creating the 1,000 APIs with one declarative apply;
- one batch deployment of all of them (one environment revision): the time the deployment request
  takes (build, validate, compile, store, push, both acknowledgements) and, independently, the time
  until each worker answers a request to the last API through its data plane;
- redeploying one changed API in the 1,000-API environment, and publishing a consumer change;
- the resident memory of the manager (and of the workers) afterwards.

``run(results_dir)`` returns the rows and writes ``manager.md`` into ``results_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import machine

APIS = int(os.environ.get("BENCH_MANAGER_APIS", "1000"))
WORKERS = 2
REPORT_INTERVAL = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Lab:
    root: Path
    manager_url: str
    backend_url: str
    token: str = ""
    worker_ports: list[int] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.manager_url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=600.0,
            trust_env=False,
        )


@contextmanager
def lab(
    workers: int = WORKERS,
    seed: Callable[[str], None] | None = None,
    manager_args: tuple[str, ...] = (),
) -> Iterator[Lab]:
    """A manager (SQLite store, seeded with ``seed(store_url)`` before it starts, started with
    ``manager_args`` besides the usual) and ``workers`` worker processes of environment
    ``bench``."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="portway-bench-manager-") as tmp:
        root = Path(tmp)

        def start(name: str, *args: str) -> subprocess.Popen[bytes]:
            log = (root / f"{name}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "portway", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(proc)
            return proc

        try:
            backend_port, manager_port = free_port(), free_port()
            start("backend", "demo-backend", "--port", str(backend_port))
            store_url = f"sqlite:///{root}/manager.db"
            if seed is not None:
                seed(store_url)
            manager = start(
                "manager",
                "manager",
                "--port",
                str(manager_port),
                "--store",
                store_url,
                "--data-dir",
                str(root),
                "--report-interval",
                str(REPORT_INTERVAL),
                *manager_args,
            )
            the_lab = Lab(
                root, f"http://127.0.0.1:{manager_port}", f"http://127.0.0.1:{backend_port}"
            )
            the_lab.pids["manager"] = manager.pid
            wait_for(
                lambda: (
                    httpx.get(the_lab.manager_url + "/healthz", trust_env=False).status_code == 200
                ),
                "the manager",
            )
            wait_for(lambda: (root / "bootstrap-admin.json").exists(), "the admin credentials")
            the_lab.token = json.loads((root / "bootstrap-admin.json").read_text())["token"]
            with the_lab.client() as client:
                client.post("/environments", json={"name": "bench"}).raise_for_status()
                client.post("/projects", json={"name": "default"}).raise_for_status()
            for index in range(workers):
                port = free_port()
                worker = start(
                    f"worker-{index}",
                    "worker",
                    "--environment",
                    "bench",
                    "--manager",
                    the_lab.manager_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--processes",
                    "1",
                    "--worker-id",
                    f"bench-{index}",
                    "--state-dir",
                    str(root / f"worker-{index}"),
                    "--secret-file",
                    str(root / "cluster.secret"),
                    "--poll-interval",
                    str(REPORT_INTERVAL),
                )
                the_lab.worker_ports.append(port)
                the_lab.pids[f"worker-{index}"] = worker.pid
            with the_lab.client() as client:
                wait_for(
                    lambda: (
                        sum(w["state"] == "up" for w in client.get("/workers").json()) == workers
                    ),
                    "every worker to register",
                )
            yield the_lab
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()


def api_document(index: int, backend: str) -> dict[str, Any]:
    return {
        "name": f"svc{index:04d}",
        "base_path": f"/svc{index:04d}",
        "backends": [{"url": backend}],
        "endpoints": [
            {"path": "/items", "methods": ["GET", "POST"]},
            {"path": "/items/{id}", "methods": ["GET", "PUT", "DELETE"]},
        ],
        "policies": {
            "request": [
                {"name": "ips", "type": "ip_filter", "config": {"allow": ["127.0.0.0/8"]}},
                {
                    "name": "limit",
                    "type": "throttling",
                    "config": {"limit": 1000000, "interval_seconds": 60},
                },
            ]
        },
    }


def serves(port: int, path: str) -> bool:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5.0, trust_env=False)
    return response.status_code == 200


def time_until_served(ports: list[int], path: str, started: float) -> dict[int, float]:
    """Per worker port: seconds from ``started`` until ``path`` answers 200 through it."""
    found: dict[int, float] = {}

    def watch(port: int) -> None:
        wait_for(lambda: serves(port, path), f"{path} on :{port}", timeout=600)
        found[port] = time.monotonic() - started

    threads = [threading.Thread(target=watch, args=(p,)) for p in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def recorder(bench: str, rows: list[dict[str, object]]) -> Callable[..., None]:
    """``row(metric, value, unit, note="")``: appends a measurement to ``rows`` and prints it."""

    def row(metric: str, value: float, unit: str, note: str = "") -> None:
        rows.append(
            {"bench": bench, "metric": metric, "value": round(value, 3), "unit": unit, "note": note}
        )
        print(f"{metric:62} {value:10.3f} {unit} {note}", flush=True)

    return row


def write_table(path: Path, title: str, intro: str, rows: list[dict[str, object]]) -> None:
    """A results file: a title, what ran, and one table row per measurement."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {title}",
        "",
        intro,
        "",
        "| metric | value | unit | note |",
        "|---|---|---|---|",
        *(f"| {r['metric']} | {r['value']} | {r['unit']} | {r['note']} |" for r in rows),
        "",
    ]
    path.write_text("\n".join(lines))


def run(results_dir: Path) -> list[dict[str, object]]:
    started_at = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    row = recorder("manager", rows)

    with lab() as the_lab, the_lab.client() as client:
        manager_pid = the_lab.pids["manager"]
        row("manager RSS, idle (no APIs)", rss_mb(manager_pid), "MB")
        row(
            "manager peak RSS (VmHWM), idle",
            rss_mb(manager_pid, "VmHWM"),
            "MB",
            "includes the first admin's argon2 hash (64 MiB memory cost)",
        )

        document = {"apis": [api_document(i, the_lab.backend_url) for i in range(APIS)]}
        t0 = time.monotonic()
        client.post("/declarative/apply", json=document).raise_for_status()
        row(f"create {APIS} APIs (one declarative apply)", time.monotonic() - t0, "s")
        row(f"manager RSS, {APIS} APIs stored", rss_mb(manager_pid), "MB")

        last = f"/svc{APIS - 1:04d}/items"
        items = [{"api": f"svc{i:04d}"} for i in range(APIS)]
        t0 = time.monotonic()
        watcher_result: dict[int, float] = {}
        watcher = threading.Thread(
            target=lambda: watcher_result.update(time_until_served(the_lab.worker_ports, last, t0))
        )
        watcher.start()
        response = client.post(
            "/environments/bench/deployments/batch", json={"items": items, "note": "bench"}
        )
        request_s = time.monotonic() - t0
        response.raise_for_status()
        deployment = response.json()
        watcher.join()
        failed = [r for r in deployment["results"] if not r["success"]]
        if failed or len(deployment["results"]) != WORKERS:
            raise RuntimeError(f"deployment did not reach both workers: {deployment['results']}")
        row(f"deploy {APIS} APIs: deployment request (push + {WORKERS} acks)", request_s, "s")
        row(
            f"deploy {APIS} APIs: until every worker serves the revision",
            max(watcher_result.values()),
            "s",
            "first request answered by each worker's data plane",
        )
        for result in deployment["results"]:
            row(f"  push to {result['worker']} (pull, compile, swap, ack)", result["seconds"], "s")
        size = len(client.get("/environments/bench/revision").content)
        row("environment revision size (JSON)", size / 1024 / 1024, "MB")
        row(f"manager RSS after deploying {APIS} APIs", rss_mb(manager_pid), "MB")
        row("manager peak RSS (VmHWM)", rss_mb(manager_pid, "VmHWM"), "MB")
        for index in range(WORKERS):
            row(
                f"worker-{index} RSS serving {APIS} APIs",
                rss_mb(the_lab.pids[f"worker-{index}"]),
                "MB",
            )

        middle = f"svc{APIS // 2:04d}"
        client.patch(f"/projects/default/apis/{middle}", json={"description": "changed"})
        t0 = time.monotonic()
        one = client.post("/environments/bench/deployments", json={"api": middle})
        one.raise_for_status()
        assert all(r["success"] for r in one.json()["results"])
        row(f"redeploy 1 changed API among {APIS} (until both acks)", time.monotonic() - t0, "s")
        for result in one.json()["results"]:
            row(f"  push to {result['worker']}", result["seconds"], "s")

        t0 = time.monotonic()
        consumer = client.post(
            "/consumers", json={"name": "bench-app", "grants": [{"api": "svc0001"}]}
        )
        consumer.raise_for_status()
        row(
            f"publish a consumer change to {APIS}-API environment (until both acks)",
            time.monotonic() - t0,
            "s",
        )
        history = client.get("/environments/bench/deployments", params={"limit": 1}).json()
        [published] = history["items"]
        for result in published["results"]:
            row(f"  push to {result['worker']}", result["seconds"], "s")
        desired = client.get("/environments/bench").json()["desired_revision"]
        wait_for(
            lambda: all(w["served_revision"] == desired for w in client.get("/workers").json()),
            "the registry to show both workers in sync",
        )
        workers = client.get("/workers").json()
        row("workers in sync in the registry", sum(w["in_sync"] for w in workers), "workers")
        row("manager RSS at the end", rss_mb(manager_pid), "MB")
        row("manager peak RSS (VmHWM) at the end", rss_mb(manager_pid, "VmHWM"), "MB")

    write_table(
        results_dir / "manager.md",
        f"Manager benchmark - {started_at:%Y-%m-%d %H:%M} UTC",
        f"{APIS} API proxies (2 endpoints, an IP filter and throttling each), one environment "
        f"of {WORKERS} real `portway worker` processes (1 process each), SQLite store, "
        f"loopback. {machine()}.",
        rows,
    )
    return rows


if __name__ == "__main__":
    run(Path(__file__).parent / "results")
