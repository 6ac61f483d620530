"""``portway up``: start manager, worker and demo backend; set up the demo through the API."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml

from portway.cluster.signing import load_or_create_secret
from portway.local.profile import LocalProfile
from portway.local.supervisor import Supervisor, port_in_use

WORKER_ID = "local-worker"
DEMO_API: dict[str, Any] = {
    "name": "demo",
    "description": "the demo API: everything under /demo goes to the echo backend",
    "base_path": "/demo",
}


class UpError(Exception):
    pass


def _wait_http(url: str, what: str, supervisor: Supervisor, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if supervisor.exited():
            name, code = supervisor.exited()[0]
            raise UpError(f"{name} exited with status {code} while starting")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise UpError(f"{what} did not answer at {url} within {timeout:.0f}s ({last!r})")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _admin_token(profile: LocalProfile) -> tuple[str, dict[str, str] | None]:
    """The admin token; on the very first start also the credentials, shown once."""
    if profile.bootstrap_file.exists():
        created = json.loads(profile.bootstrap_file.read_text())
        _write_private(profile.token_file, created["token"] + "\n")
        profile.bootstrap_file.unlink()
        return created["token"], created
    if profile.token_file.exists():
        return profile.token_file.read_text().strip(), None
    raise UpError(
        f"no admin token in {profile.token_file}; the store already has users. "
        f"Remove {profile.data_dir} to start from scratch."
    )


class Api:
    """A tiny client of the management API, used to set up the demo like any operator would."""

    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
            trust_env=False,
        )

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        response = self.client.request(method, path, json=body)
        if response.status_code >= 400 and response.status_code not in ok:
            raise UpError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


def _setup_demo(api: Api, profile: LocalProfile) -> dict[str, Any]:
    api.call("POST", "/projects", {"name": "default"}, ok=(409,))
    wanted = DEMO_API | {"backends": [{"url": profile.backend_url}]}
    current = api.call("GET", "/projects/default/apis/demo", ok=(404,))
    if current and current.get("error") == "not_found":
        api.call("POST", "/projects/default/apis", wanted)
    else:
        api.call("PUT", "/projects/default/apis/demo", wanted)
    result: dict[str, Any] = api.call(
        "POST",
        f"/environments/{profile.environment}/deployments",
        {"api": "demo", "note": "portway up"},
    )
    return result


def _wait_registered(
    api: Api, profile: LocalProfile, supervisor: Supervisor, since: datetime
) -> None:
    """Wait for the report of the worker just started (not a record left by an earlier run)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if supervisor.exited():
            name, code = supervisor.exited()[0]
            raise UpError(f"{name} exited with status {code} while starting")
        workers = api.call("GET", f"/workers?environment={profile.environment}")
        if any(
            w["state"] == "up"
            and w["id"] == WORKER_ID
            and datetime.fromisoformat(w["started_at"]) >= since
            for w in workers
        ):
            return
        time.sleep(0.2)
    raise UpError("the worker did not register with the manager within 30s")


def run_up(profile: LocalProfile) -> int:
    busy = [(n, p) for n, p, _ in profile.ports() if port_in_use(profile.host, p)]
    if busy:
        for name, port in busy:
            where = f"port {port} ({name}) is already in use on {profile.host}"
            print(f"portway: error: {where}", file=sys.stderr)
        return 2
    load_or_create_secret(profile.secret_file)
    config = str(profile.config_file.resolve())
    _write_private(
        profile.config_file,
        "# Written by `portway up`; every value can be overridden by PORTWAY_… variables.\n"
        + yaml.safe_dump(profile.platform(WORKER_ID), sort_keys=False),
    )
    python = [sys.executable, "-m", "portway"]
    supervisor = Supervisor()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C stops everything even when this process was started with SIGINT ignored (as a
    # shell starts background jobs) or blocked: the handler is ours, the signal let through
    signal.signal(signal.SIGINT, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    print("Portway — single-host profile (loopback, no root needed):")
    for name, port, meaning in profile.ports():
        print(f"  {name:<13} {profile.host}:{port:<6} {meaning}")
    try:
        supervisor.start(
            "demo backend",
            [*python, "demo-backend", "--host", profile.host, "--port", str(profile.backend_port)],
        )
        supervisor.start("manager", [*python, "manager", "--config", config])
        _wait_http(profile.backend_url + "/", "demo backend", supervisor)
        _wait_http(profile.manager_url + "/healthz", "manager", supervisor)
        token, created = _admin_token(profile)
        api = Api(profile.manager_url, token)
        api.call("POST", "/environments", {"name": profile.environment, "type": "dev"}, ok=(409,))
        worker_started = datetime.now(UTC)
        supervisor.start(
            "worker",
            [*python, "worker", "--config", config, "--environment", profile.environment],
        )
        _wait_registered(api, profile, supervisor, worker_started)
        deployment = _setup_demo(api, profile)
        served = [r for r in deployment["results"] if r.get("success")]
        print(
            f"\nDeployed demo API revision {deployment['api_revision']} to "
            f"{profile.environment} (environment revision {deployment['env_revision']}, "
            f"{len(served)}/{len(deployment['results'])} worker(s) acknowledged)."
        )
        print("\nTry:")
        print(
            f"  curl {profile.worker_url}/demo/echo?x=1      "
            "# through the worker to the demo backend"
        )
        print(f"  curl {profile.worker_url}/_portway/health    # the worker's health probe")
        print(
            f'  curl -H "Authorization: Bearer $(cat {profile.token_file})" '
            f"{profile.manager_url}/api/v1/workers"
        )
        print(f"  open {profile.manager_url}/                       # the web manager UI")
        print(f"  open {profile.manager_url}/api/v1/docs            # the management API")
        print(f"  portway matrix --config {config}      # this installation's matrix")
        print(f"  portway audit --config {config} --from local")
        if created:
            print(
                f"\nFirst admin (shown once): user {created['username']}, "
                f"password {created['password']}"
            )
            print(f"Its API token is kept in {profile.token_file} (mode 0600).")
        else:
            print(f"\nAdmin API token: {profile.token_file}")
        print("\nPress Ctrl-C to stop.")
        exited = supervisor.wait()
        if exited is not None:
            print(f"\nportway: error: {exited[0]} exited with status {exited[1]}", file=sys.stderr)
            return 1
    except UpError as exc:
        print(f"\nportway: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping…", file=sys.stderr)
    finally:
        supervisor.stop()
    return 0
