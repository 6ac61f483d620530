"""Under ``CI=true`` a test whose capability is missing fails; elsewhere it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
from tests.support.servers import missing_capability

def test_needs_a_capability():
    missing_capability("a tool this machine lacks")
"""


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_missing_capability_fails_only_in_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {**os.environ, "CI": ci}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout + result.stderr
