"""Helpers shared by the matrix tests (a unique module name: tests/ is not a package)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.servers import missing_capability

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
REPO = HERE.parents[1]
SEED = REPO / ".." / "shared" / "spec" / "network-connection-matrix.txt"
UPDATE = os.environ.get("PORTWAY_UPDATE_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    """Compare with ``golden/<name>``; ``PORTWAY_UPDATE_GOLDEN=1`` rewrites it instead."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"golden file {path} is missing: run with PORTWAY_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (PORTWAY_UPDATE_GOLDEN=1)"


def is_root() -> bool:
    return os.geteuid() == 0


def require_root_and(*tools: str) -> None:
    """The firewall validators talk to the kernel: root, and a throwaway namespace each."""
    if not is_root():
        missing_capability("needs root to validate rules against the kernel (CI runs as root)")
    for tool in ("unshare", *tools):
        if shutil.which(tool) is None:
            missing_capability(f"{tool} is not installed (scripts/apt-packages.txt lists it)")


def run_in_fresh_netns(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", *command],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
