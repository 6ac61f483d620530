"""Benchmarks: `make bench` runs `python -m bench`."""

from __future__ import annotations

import os
import platform
import sys


def machine() -> str:
    """What a result was measured on, for every report: the cores and the interpreter (its build
    moves CPU per request by ~15 %: docs/decisions.md)."""
    return (
        f"Machine: {os.cpu_count()} cores; {platform.python_implementation()} "
        f"{platform.python_version()} (`{os.path.realpath(sys.executable)}`)"
    )
