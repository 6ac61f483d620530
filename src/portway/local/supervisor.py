"""Runs the platform's processes and stops them all, cleanly, on Ctrl-C or when one dies.

Children run in their own sessions, so a Ctrl-C reaches only the supervisor, which then stops them
in order (worker, manager, backend) with SIGTERM and, after a grace period, SIGKILL. Each child also
gets PR_SET_PDEATHSIG, so even a killed supervisor leaves no orphan behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Supervisor:
    grace: float = 10.0
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        process = subprocess.Popen(
            list(argv),
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, **(env or {})},
        )
        self.children.append((name, process))

    def exited(self) -> list[tuple[str, int]]:
        return [(n, p.returncode) for n, p in self.children if p.poll() is not None]

    def wait(self) -> tuple[str, int] | None:
        """Block until a child exits or a signal arrives; return the child that exited."""
        while True:
            done = self.exited()
            if done:
                return done[0]
            time.sleep(0.2)

    def stop(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                print(f"  stopping {name} (pid {process.pid})", file=sys.stderr)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.children.clear()
