"""Benchmarks: `make bench` runs `python -m bench`."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

NOISY_SPREAD = 1.3
"""A target whose fastest sample is more than this times its slowest makes a run noisy."""


def machine() -> str:
    """What a result was measured on, for every report: the cores and the interpreter (its build
    moves CPU per request by ~15 %: docs/decisions.md)."""
    return (
        f"Machine: {os.cpu_count()} cores; {platform.python_implementation()} "
        f"{platform.python_version()} (`{os.path.realpath(sys.executable)}`)"
    )


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far per state, in ticks (``/proc/stat``: user, nice, system,
    idle, iowait, irq, softirq, steal, ...)."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def noise(spreads: Mapping[str, float], before: list[int], after: list[int]) -> str:
    """How noisy a run was, for its report: the share of CPU time the hypervisor gave to other
    guests between ``before`` and ``after`` (``cpu_ticks``), and the widest spreads of req/s
    between a target's samples (``spreads``: fastest ÷ slowest)."""
    spent = [b - a for a, b in zip(before[:8], after[:8], strict=True)]
    steal = spent[7] / max(1, sum(spent))
    widest = sorted(spreads.items(), key=lambda item: -item[1])[:3]
    note = (
        f"Noise: steal {steal:.1%} of the machine's CPU time during the samples; req/s fastest "
        f"÷ slowest sample, widest: {', '.join(f'{t} {s:.2f}x' for t, s in widest)}."
    )
    if widest and widest[0][1] > NOISY_SPREAD:
        note += (
            f" **A noisy run** (a target spread more than {NOISY_SPREAD}x): its ratios are "
            "coarse, and a 'met' column here is no verdict."
        )
    return note
