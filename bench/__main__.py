"""``make bench``: every benchmark of the project, one after the other, in one run.

The data plane runs first; then every other ``bench`` module that exists and has
``run(results_dir) -> list[dict]`` (stores, manager, policies, HTTP/2 and gRPC).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
OTHERS = ("stores", "manager", "lists", "github", "policies", "http2")


def main() -> None:
    from bench import dataplane

    dataplane.run(RESULTS)
    for name in OTHERS:
        if importlib.util.find_spec(f"bench.{name}") is not None:
            module = importlib.import_module(f"bench.{name}")
            module.run(RESULTS)


if __name__ == "__main__":
    main()
