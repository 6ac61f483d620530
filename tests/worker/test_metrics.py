"""Prometheus metrics of a real worker with two processes: the aggregate of both on the metrics
listener, a dead process's live gauges dropped, and nothing of it on the public listener."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port
from tests.worker.support import api, backends, revision
from tests.worker.test_processes import worker_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            out[key] = out.get(key, 0.0) + sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


POLICIES = {
    "request": [
        {"name": "nobody", "type": "ip_filter", "shadow": True, "config": {"deny": ["0.0.0.0/0"]}}
    ]
}


async def test_two_processes_one_aggregate_and_nothing_on_the_public_listener(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale from an earlier run")
    metrics_port = free_port()
    async with backends("b") as (backend,):
        rev = revision(
            api(
                "svc",
                "/",
                [backend.url],
                policies=POLICIES,
                circuit_breaker={"enabled": True},
            ),
            api(
                "dead",
                "/dead",
                [f"http://127.0.0.1:{free_port()}"],
                connection={"retries": 2, "retry_delay": {"initial": 0}},
            ),
        )
        extra = [
            "--metrics-port",
            str(metrics_port),
            "--cache",
            "local://",
            "--logs",
            f"sqlite://{tmp_path / 'traffic.db'}",
        ]
        with worker_process(
            tmp_path,
            rev.model_dump_json(),
            processes=2,
            extra=extra,
            env={"PROMETHEUS_MULTIPROC_DIR": str(folder)},
        ) as (proc, ready):
            assert not (folder / "counter_1.db").exists()  # the operator's folder was emptied
            port = ready[0]["ports"]["http"]  # type: ignore[index]
            pids = {int(r["pid"]) for r in ready}  # type: ignore[call-overload]
            public = f"http://127.0.0.1:{port}"
            for i in range(30):  # a new connection each: the kernel spreads them on both
                async with httpx.AsyncClient() as client:
                    path = "/status/503" if i % 10 == 0 else f"/x/{i}"
                    await client.get(public + path)
            async with httpx.AsyncClient() as client:
                assert (await client.get(public + "/dead/x")).status_code == 502

            def counted() -> bool:
                s = scrape(metrics_port)
                return total(s, "portway_requests_total", api="svc") == 30

            await asyncio.to_thread(until, counted, "30 requests counted")
            s = await asyncio.to_thread(scrape, metrics_port)
            assert total(s, "portway_requests_total", api="svc", status_class="2xx") == 27
            assert total(s, "portway_requests_total", api="svc", status_class="5xx") == 3
            assert total(s, "portway_request_duration_seconds_count", api="svc") == 30
            assert total(s, "portway_backend_duration_seconds_count", api="svc") == 30
            assert total(s, "portway_upstream_errors_total", api="dead", error="bad_gateway") == 1
            assert total(s, "portway_upstream_retries_total", api="dead") == 2
            # both processes wrote their own files, and the aggregate holds them both
            writers = {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("*.db")}
            assert pids <= writers

            def sampled() -> bool:
                s = scrape(metrics_port)
                verdicts = total(
                    s, "portway_policy_verdicts_total", policy="nobody", verdict="shadow_denied"
                )
                return verdicts == 30 and total(s, "portway_traffic_records_delivered_total") == 31

            await asyncio.to_thread(until, sampled, "sampled verdicts and deliveries")
            s = await asyncio.to_thread(scrape, metrics_port)
            assert total(s, "portway_revision_served", environment="test") == 1
            assert total(s, "portway_circuit_breaker_state", api="svc", state="closed") == 1
            assert total(s, "portway_circuit_breaker_state", api="svc", state="open") == 0
            assert total(s, "portway_traffic_records_dropped_total") == 0
            assert (
                "portway_upstream_connections_idle",
                (("api", "svc"), ("backend", backend.url)),
            ) in s

            # the public listener never answers with metrics, whatever the spelling
            async with httpx.AsyncClient() as client:
                for path in (
                    "/metrics",
                    "/metrics/",
                    "//metrics",
                    "/%6detrics",
                    "/METRICS",
                    "/_portway/metrics",
                    "/_portway//metrics",
                    "/x/../metrics",
                ):
                    for method in ("GET", "HEAD", "POST"):
                        answer = await client.request(method, public + path)
                        assert "portway_requests" not in answer.text, (method, path)
                        assert "# HELP" not in answer.text, (method, path)

            # a process that dies takes its live gauges with it; its replacement reports
            victim = sorted(pids)[0]
            os.kill(victim, signal.SIGKILL)

            def forgotten() -> bool:
                live = [f for f in folder.glob("gauge_live*.db") if f.stem.endswith(f"_{victim}")]
                return not live

            await asyncio.to_thread(until, forgotten, "the dead process's gauges dropped")
            assert proc.poll() is None
