"""The generated HAProxy and nginx configurations in front of two real workers on loopback:
TLS with the lab CA on the front port, the 80 → 443 redirect, the balancer's X-Forwarded-* (a
client's own are not passed on), the control paths refused, and a worker SIGKILLed under load
without a single client error (health checks, retries, redispatch)."""

from __future__ import annotations

import signal
import ssl
import threading
from pathlib import Path

import httpx

from portway.deploy.cli import render
from portway.deploy.plan import plan_from_mapping
from tests.deploy.support import tool
from tests.e2e.conftest import REPORT_INTERVAL, Platform
from tests.support.processes import Process, free_port, portway, wait_until

CLIENTS = 3
REQUESTS_PER_CLIENT = 100
KILL_AFTER = 60


def start_worker(plat: Platform, worker_id: str, port: int) -> Process:
    """A worker that trusts the balancer on loopback for X-Forwarded-*."""
    proc = Process(
        worker_id,
        portway(
            "worker",
            "--environment",
            "dev",
            "--manager",
            plat.manager_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--processes",
            "1",
            "--worker-id",
            worker_id,
            "--state-dir",
            str(plat.root / worker_id),
            "--secret-file",
            str(plat.secret_file),
            "--poll-interval",
            str(REPORT_INTERVAL),
            "--trusted-proxy",
            "127.0.0.1/32",
        ),
        plat.root,
    )
    plat.processes.append(proc)
    wait_until(lambda: plat.worker_state(worker_id) == "up", f"{worker_id} up", proc=proc)
    return proc


def test_haproxy_in_front_of_two_workers(platform: Platform, tmp_path: Path) -> None:
    balancer_in_front_of_two_workers(platform, tmp_path, "haproxy")


def test_nginx_in_front_of_two_workers(platform: Platform, tmp_path: Path) -> None:
    balancer_in_front_of_two_workers(platform, tmp_path, "nginx")


def balancer_command(target: str, config_text: str, tmp_path: Path) -> list[str]:
    config = tmp_path / f"{target}.cfg"
    if target == "haproxy":
        config.write_text(config_text)
        return [tool("haproxy"), "-db", "-f", str(config)]
    # keep the test's files in its own directory
    config.write_text(
        config_text.replace("/run/portway-nginx.pid", str(tmp_path / "nginx.pid")).replace(
            "/var/log/nginx/portway-access.log", str(tmp_path / "access.log")
        )
    )
    return [tool("nginx"), "-e", "stderr", "-c", str(config), "-g", "daemon off;"]


def balancer_in_front_of_two_workers(platform: Platform, tmp_path: Path, target: str) -> None:
    ports = [free_port(), free_port()]
    workers = [start_worker(platform, f"w{i}", port) for i, port in enumerate(ports, start=1)]
    api = {"name": "demo", "base_path": "/demo", "backends": [{"url": platform.backend_url}]}
    platform.call("POST", "/projects/default/apis", api, expect=201)
    platform.deploy("demo")

    https_port, http_port = free_port(), free_port()
    plan = plan_from_mapping(
        {
            "environment": "dev",
            "public_names": ["localhost"],
            "https_port": https_port,
            "http_port": http_port,
            "workers": [f"127.0.0.1:{p}" for p in ports],
            "manager": f"127.0.0.1:{platform.manager_port}",
            "trusted_proxies": ["127.0.0.1/32"],
            "health_check_interval_ms": 200,
        }
    )
    (text,) = render(plan, target, tmp_path / "lab-ca").values()
    lb = Process(target, balancer_command(target, text, tmp_path), tmp_path)
    platform.processes.append(lb)
    trust = ssl.create_default_context(cafile=str(tmp_path / "lab-ca" / "ca.pem"))
    base = f"https://localhost:{https_port}"

    def both_up() -> bool:
        with httpx.Client(verify=trust, trust_env=False, timeout=5) as c:
            return c.get(f"{base}/demo/echo").status_code == 200

    wait_until(both_up, f"{target} serving", proc=lb)

    with httpx.Client(verify=trust, trust_env=False, timeout=10) as client:
        r = client.get(
            f"{base}/demo/echo?x=1",
            headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http"},
        )
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        seen = r.json()["headers"]
        # the balancer replaced the client's claim; the worker (trusting it) added its peer
        assert seen["x-forwarded-for"] == "127.0.0.1, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        for path in (
            "/_portway/health",
            "/_portway/status",
            "/%5Fportway/health",
            "/_PORTWAY/health",
            "//_portway/health",
            "/_portway",
        ):
            refused = client.get(base + path)
            assert refused.status_code == 404, path
    with httpx.Client(trust_env=False, timeout=10) as plain:
        r = plain.get(f"http://localhost:{http_port}/demo/echo?x=1")
        assert r.status_code == 301
        assert r.headers["location"] == f"https://localhost:{https_port}/demo/echo?x=1"

    # a worker dies (SIGKILL: no drain, connections reset) while clients keep calling
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()
    killed = threading.Event()

    def client_loop() -> None:
        with httpx.Client(verify=trust, trust_env=False, timeout=10) as c:
            for i in range(REQUESTS_PER_CLIENT):
                try:
                    r = c.get(f"{base}/demo/echo?i={i}")
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                with lock:
                    done[0] += 1
                    if done[0] == KILL_AFTER:
                        workers[0].proc.send_signal(signal.SIGKILL)
                        killed.set()

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert killed.is_set()
    assert workers[0].proc.wait(10) == -signal.SIGKILL
    assert done[0] == CLIENTS * REQUESTS_PER_CLIENT
    assert errors == []
    assert workers[1].alive()
