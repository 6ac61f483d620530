"""Linux network namespaces, veth links and nftables, driven through ``ip`` and ``nft``.

Used by ``portway lab`` and by the netns tests. Every namespace and every link made in the root
namespace carries a caller-chosen prefix, so concurrent labs never collide and ``down`` can find
what a crashed run left behind. Work inside a namespace either runs as a process
(``exec_argv``) or, for a socket opened by this process, in a thread moved into the namespace
(``in_namespace``): ``setns`` moves only the calling thread, and a socket stays in the namespace
it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsError(RuntimeError):
    """An ``ip``/``nft`` command failed; the message carries its stderr."""


def sh(*command: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def missing_tools(*tools: str) -> str | None:
    """Why namespaces cannot be built here (root, ``ip netns``, the named tools), or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (scripts/apt-packages.txt lists it)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode:
        return "`ip netns` is not available here"
    return None


def namespaces_with(prefix: str) -> list[str]:
    names = [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def root_links_with(prefix: str) -> list[str]:
    found = []
    for line in sh("ip", "-o", "link", "show").splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0] if ":" in line else ""
        if name.startswith(prefix):
            found.append(name)
    return found


def pids_in(namespace: str) -> list[int]:
    out = sh("ip", "netns", "pids", namespace, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


@dataclass
class Namespaces:
    """Namespaces ``PREFIX-SHORT`` and veth pairs made under ``LINKPREFIX`` NN a/b names."""

    prefix: str
    link_prefix: str
    on_create: Callable[[str, str], None] = lambda kind, name: None
    """Told ("netns"|"link", name) *before* each is made, so a crash leaves a record."""
    namespaces: list[str] = field(default_factory=list)
    links: int = 0

    def ns(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def add(self, short: str) -> str:
        name = self.ns(short)
        self.on_create("netns", name)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, left: str, left_if: str, right: str, right_if: str) -> None:
        """A veth pair between two namespaces, created under unique names in the root ns."""
        self.links += 1
        a, b = f"{self.link_prefix}{self.links:02d}a", f"{self.link_prefix}{self.links:02d}b"
        self.on_create("link", a)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for name, namespace, final in ((a, left, left_if), (b, right, right_if)):
            sh("ip", "link", "set", name, "netns", namespace)
            sh("ip", "-n", namespace, "link", "set", name, "name", final)
            sh("ip", "-n", namespace, "link", "set", final, "up")

    def nft(self, short: str, rules: str) -> None:
        sh("ip", "netns", "exec", self.ns(short), "nft", "-f", "-", stdin=rules)

    def flush(self, short: str) -> None:
        sh("ip", "netns", "exec", self.ns(short), "nft", "flush", "ruleset")

    def exec_argv(self, short: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(short), *argv]


def remove(namespaces: Sequence[str], link_prefix: str) -> None:
    """Kill every process inside ``namespaces``, delete them and the root links left behind."""
    for name in namespaces:
        for pid in pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    for name in namespaces:
        sh("ip", "netns", "del", name, check=False)
    for name in root_links_with(link_prefix):
        sh("ip", "link", "del", name, check=False)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(errno)}")


def in_namespace(namespace: str, work: Callable[[], T], timeout: float = 300) -> T:
    """Run ``work`` in a thread moved into ``namespace``; its sockets live there."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(Path("/run/netns") / namespace, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append(work())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise NetnsError(f"work in {namespace} did not finish within {timeout:.0f}s")
    if failure:
        raise failure[0]
    return result[0]
