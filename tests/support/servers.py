"""Real servers for tests and benchmarks: each starts on a free loopback port, is probed until it
answers, and is stopped (its whole process group) when the caller is done.

The binaries come from ``scripts/provision``, which writes their paths and versions to
``$PORTWAY_CACHE/servers.env`` (default ``~/.cache/portway``). When something is missing,
``ServerMissing`` is raised; ``skip_or_fail`` turns that into a skip on a developer machine and a
failure when ``CI`` is set, so CI can never pass by skipping.

Children get ``PR_SET_PDEATHSIG`` so they die with the process that started them, even when it is
killed hard; start servers from the main thread (the signal follows the starting thread).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

from portway.lab.provisioned import (
    ElasticsearchNode,
    cache_dir,
    elasticsearch_node,
    hazelcast_member_config,
    manifest,
)

LOOPBACK = "127.0.0.1"


class ServerMissing(RuntimeError):
    """A server binary is not provisioned (run ``scripts/provision``)."""


class ServerFailed(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


def require(key: str) -> str:
    """A path from the provision manifest that exists, or ``ServerMissing``."""
    value = manifest().get(key, "")
    if not value or not Path(value).exists():
        raise ServerMissing(
            f"{key} is not provisioned ({value or 'absent'}): run scripts/provision "
            f"(manifest: {cache_dir() / 'servers.env'})"
        )
    return value


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing_capability(reason: str) -> NoReturn:
    """A capability a test needs (root, a tool, a real server) is absent: skip on a developer
    machine, fail under ``CI`` so that CI can never pass by skipping."""
    import pytest

    if in_ci():
        pytest.fail(f"CI is set and a capability is missing: {reason}", pytrace=False)
    pytest.skip(f"{reason} (CI would fail here)")


def skip_or_fail(exc: Exception) -> NoReturn:
    missing_capability(f"real server missing: {exc}")


PORTS_FIRST, PORTS_END = 20000, 32768
"""Where ``free_port`` picks: below the kernel's ephemeral range (32768-60999 by default), so no
outgoing connection's local port is ever one of them."""


class _PortSlice:
    """This test process's share of ``PORTS_FIRST``..``PORTS_END``: under pytest-xdist each worker
    has its own slice, so two workers never pick the same port while one of them is still
    starting its server (the servers bind with ``SO_REUSEPORT``: two of them on one port would
    both start and share its connections). Ports are handed out in turn from a random start,
    each once per cycle through the slice."""

    def __init__(self) -> None:
        count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        size = (PORTS_END - PORTS_FIRST) // count
        self.first = PORTS_FIRST + (index % count) * size
        self.size = size
        self.offset = int.from_bytes(os.urandom(2), "big") % size

    def next(self) -> int:
        for _ in range(self.size):
            port = self.first + self.offset
            self.offset = (self.offset + 1) % self.size
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {self.first}-{self.first + self.size - 1}")


_ports: _PortSlice | None = None


def free_port() -> int:
    """A loopback TCP port nothing is bound to now, from this process's slice (``_PortSlice``)."""
    global _ports
    if _ports is None:
        _ports = _PortSlice()
    return _ports.next()


def tcp_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (connections are refused at once)."""
    yield free_port()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections (kernel backlog) and never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def _stopped(task: Path) -> bool:
    try:
        # /proc/<pid>/task/<tid>/stat: "tid (comm) STATE ..."; comm may contain spaces
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return True  # the thread is gone


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_RUNNING: set[Server] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


@dataclass(eq=False)
class Server:
    """One server process. ``probe`` returns True once the server answers."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    probe: Callable[[Server], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    startup_timeout: float = 60.0
    stop_timeout: float = 30.0
    on_cleanup: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> Server:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting; call from the thread that will outlive it (the
        parent-death signal fires when the *thread* that started the child exits)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            preexec_fn=_die_with_parent,
        )
        _RUNNING.add(self)

    def wait_ready(self) -> Server:
        """Probe until the server answers; stop it and raise ``ServerFailed`` if it never does."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise ServerFailed(
                    f"{self.name} exited with {code} while starting:\n" + self.log_tail()
                )
            if self.probe(self):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(
                    f"{self.name} not ready after {self.startup_timeout}s:\n" + self.log_tail()
                )
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            # Children that outlived the leader (the Elasticsearch server JVM under its launcher).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        _RUNNING.discard(self)

    def freeze(self) -> None:
        """SIGSTOP the server and wait until every thread is stopped: it accepts connections (the
        kernel does) but never answers. A signal is delivered asynchronously, so without the wait
        a request sent right after ``kill`` may still be served."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not all(_stopped(t) for t in Path(f"/proc/{self.proc.pid}/task").iterdir()):
            if time.monotonic() > deadline:
                raise ServerFailed(f"{self.name} did not stop on SIGSTOP")
            time.sleep(0.01)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and run the cleanup (removes the work directory where the server made one)."""
        self.stop()
        if self.on_cleanup is not None:
            self.on_cleanup()
            self.on_cleanup = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Redis -------------------------------------------------------------------------------------


def _redis_probe(server: Server) -> bool:
    try:
        with socket.create_connection((LOOPBACK, server.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server(workdir: Path) -> Server:
    binary = require("REDIS_SERVER")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"]
    return Server("redis", argv, port, workdir, _redis_probe, startup_timeout=20)


# --- FerretDB (MongoDB wire protocol) ----------------------------------------------------------


def _mongo_probe(server: Server) -> bool:
    if not tcp_open(server.port):
        return False
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(
        LOOPBACK, server.port, serverSelectionTimeoutMS=1000, directConnection=True
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


FERRETDB_REPLICA_SET = "rs0"


def ferretdb_server(workdir: Path) -> Server:
    """FerretDB on SQLite; it announces itself as replica set ``rs0`` so replica-set URLs work."""
    binary = require("FERRETDB_BIN")
    port = free_port()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--handler=sqlite",
        f"--sqlite-url=file:{workdir / 'data'}/",
        f"--listen-addr={LOOPBACK}:{port}",
        "--debug-addr=-",
        "--telemetry=disable",
        f"--state-dir={workdir}",
        f"--repl-set-name={FERRETDB_REPLICA_SET}",
        "--log-level=warn",
    ]
    return Server("ferretdb", argv, port, workdir, _mongo_probe, startup_timeout=30)


# --- Hazelcast ---------------------------------------------------------------------------------

HAZELCAST_CLUSTER = "portway-test"


def _hazelcast_probe(server: Server) -> bool:
    try:
        started = b" is STARTED" in server.log_path.read_bytes()
    except OSError:
        return False
    return started and tcp_open(server.port)


def hazelcast_server(workdir: Path, cluster: str = HAZELCAST_CLUSTER) -> Server:
    jar = require("HAZELCAST_JAR")
    java = Path(require("JAVA_HOME")) / "bin" / "java"
    port = free_port()
    config = workdir / "hazelcast.yaml"
    config.write_text(hazelcast_member_config(cluster, port, LOOPBACK))  # loopback only
    argv = [
        str(java),
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        f"-Dhazelcast.config={config}",
        "-Djava.net.preferIPv4Stack=true",
        "-cp",
        jar,
        "com.hazelcast.core.server.HazelcastMemberStarter",
    ]
    return Server("hazelcast", argv, port, workdir, _hazelcast_probe, startup_timeout=60)


# --- Elasticsearch -----------------------------------------------------------------------------


def _http_json(url: str, timeout: float = 2.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _es_probe(server: Server) -> bool:
    try:
        health = _http_json(
            f"http://{LOOPBACK}:{server.port}/_cluster/health?wait_for_status=yellow&timeout=1s"
        )
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return isinstance(health, dict) and health.get("status") in ("green", "yellow")


def elasticsearch_server(heap: str = "512m") -> Server:
    """Elasticsearch from the integ-test zip, single node, security off, bound to loopback.

    It refuses to run as root, so as root it runs as the provisioned unprivileged user, in a work
    directory outside root's home (which that user cannot enter). ``close()`` removes it.
    """
    home = Path(require("ELASTICSEARCH_HOME"))
    java_home = require("JAVA_HOME")
    user = manifest().get("ELASTICSEARCH_USER") or None
    if os.geteuid() == 0 and not user:
        raise ServerMissing("running as root but no ELASTICSEARCH_USER was provisioned")
    workdir = Path(tempfile.mkdtemp(prefix="portway-es-"))
    workdir.chmod(0o755)
    port, transport = free_port(), free_port()
    node = ElasticsearchNode("portway-test-1", LOOPBACK, port, transport, "portway-test")
    launch = elasticsearch_node(workdir, node, heap, home, java_home, user)
    return Server(
        "elasticsearch",
        launch.argv,
        port,
        workdir,
        _es_probe,
        env=launch.env,
        user=launch.user,
        startup_timeout=180,
        stop_timeout=60,
        on_cleanup=lambda: shutil.rmtree(workdir, ignore_errors=True),
    )
