"""Instructions per request of the worker (issue 15): the figure a noisy machine cannot move.

    python -m bench.instructions [--base NAME=SRC] [--targets a,b,...] [--seconds 15] [--cache-sim]

CPU time per request (``bench.chain_cpu``) moves by ±30 % on a shared VM with steal time, and
req/s more; a change worth 3 % cannot be seen that way. This bench runs each worker under
valgrind's callgrind, which counts the instructions the process executes (user space: the
interpreter, uvloop, httptools, orjson, libc — not the kernel's side of a system call). It drives
the worker with ``wrk -t1 -c8`` (the policy bench's request and ``X-Api-Key``), turns counting on
after a warm-up, off after ``--seconds``, subtracts what the worker executes when idle over as
long (counted next, for ``IDLE_SECONDS``), and divides by the requests wrk completed. Two runs of
the same code agree within ~0.5 %. Under valgrind a worker serves ~150 requests/s, so the
counting window holds a few thousand requests.

Targets: ``worker`` (no policies), ``one-policy`` (an ``ip_filter`` denying an address no request
comes from: what a route with any policy pays before its policies do anything),
``chain-local-nolog`` and ``chain-local`` (``api_key`` + ``throttling`` on the in-process cache,
without and with the SQLite traffic log). The traffic sink's child process is not counted (its
CPU is in ``bench.chain_cpu``'s sink column); the worker's own side of logging is.

``--base NAME=SRC`` (repeatable) counts the same targets on another source tree (``SRC`` holds
the ``portway`` package, e.g. ``src/`` of a ``git archive``), for a before/after column.
Instruction counts are not time: a cache miss or a system call costs more than its count. Use
this to see what a change saves, and the CPU and req/s benches for what a request costs.

``--cache-sim`` counts estimated cycles instead: callgrind also simulates the caches of one core
of this machine (its L1 data and instruction caches, and its L2 as the last level: the L3 is
shared with the machine's other tenants), and each request's figure is
``L1 hits + 5 x L2 hits + 35 x memory accesses`` (Itamar Turner-Trauring's estimate, as
iai-callgrind computes it). It shows what a change does to the caches, which the CPU figures of
a shared VM are too noisy to see and plain instruction counts leave out; valgrind runs ~2x
slower with it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chain_cpu import parse_bases, source_env
from bench.dataplane import Lab, free_port, revision_json, wait_port, worker_args
from bench.policies import SCENARIO, chain_revision

TARGETS = ("worker", "one-policy", "chain-local-nolog", "chain-local")
_REQUESTS = re.compile(r"(\d+) requests in")
_TOTALS = re.compile(rb"^totals:((?:\s+\d+)+)", re.MULTILINE)
IDLE_SECONDS = 10
STARTUP_SECONDS = 240.0
"""A worker's imports under valgrind take a minute on a busy 2-core machine."""


def one_policy_revision(backend: int) -> str:
    """The one-route revision with one cheap policy that lets every request through."""
    revision: dict[str, Any] = json.loads(revision_json(backend, 1, False))
    revision["apis"][0]["api"]["policies"] = {
        "request": [{"name": "ipf", "type": "ip_filter", "config": {"deny": ["192.0.2.1"]}}]
    }
    return json.dumps(revision)


def _wrk(port: int, seconds: int) -> int:
    url = f"http://127.0.0.1:{port}{SCENARIO.path}"
    args = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "30s", "-H", SCENARIO.headers[0]]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    done = _REQUESTS.search(out)
    if done is None or "Non-2xx" in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return int(done.group(1))


def _cost(totals: list[int]) -> int:
    """The instructions of a dump's ``totals`` line; with the caches simulated (its events are
    ``Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw``), the estimated cycles."""
    if len(totals) == 1:
        return totals[0]
    ir, dr, dw, i1mr, d1mr, d1mw, ilmr, dlmr, dlmw = totals
    l1_misses = i1mr + d1mr + d1mw
    memory = ilmr + dlmr + dlmw
    return (ir + dr + dw - l1_misses) + 5 * (l1_misses - memory) + 35 * memory


def _counted(lab: Lab, out: Path) -> int:
    """The instructions (or estimated cycles) in every dump of ``out`` so far."""
    return sum(
        _cost([int(n) for n in found.split()])
        for dump in lab.root.glob(out.name + "*")
        for found in _TOTALS.findall(dump.read_bytes())
    )


def cache_options() -> list[str]:
    """callgrind's cache geometry for one core of this machine: ``--I1``, ``--D1`` and, as its
    last level, the core's L2 (``SIZE,WAYS,LINE`` from sysfs)."""
    found: dict[str, str] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
        name = {("1", "Data"): "D1", ("1", "Instruction"): "I1", ("2", "Unified"): "LL"}.get(
            (level, kind)
        )
        if name is not None:
            size = int((index / "size").read_text().strip().removesuffix("K")) * 1024
            ways = (index / "ways_of_associativity").read_text().strip()
            line = (index / "coherency_line_size").read_text().strip()
            found[name] = f"--{name}={size},{ways},{line}"
    if len(found) != 3:
        raise SystemExit("cannot read this machine's L1 and L2 caches from sysfs")
    return ["--cache-sim=yes", *found.values()]


def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, check=True)


def _window(pid: int, work: Callable[[], int]) -> tuple[int, float]:
    """Counts instructions while ``work`` runs, then dumps them; ``work``'s result and the
    window's length in seconds."""
    _control(pid, "-i", "on")
    began = time.monotonic()
    result = work()
    seconds = time.monotonic() - began
    _control(pid, "-i", "off")
    _control(pid, "-d")
    return result, seconds


def _idle() -> int:
    time.sleep(IDLE_SECONDS)
    return 0


def count(
    lab: Lab,
    name: str,
    revision: Path,
    extra: list[str],
    src: Path | None,
    seconds: int,
    valgrind: list[str],
) -> float:
    """Instructions per request of one worker started under callgrind, less what the worker
    does when idle (timers, the spool's check each second) over the same time: under valgrind
    a second holds ~150 requests, not thousands, so per-second work would weigh ~30x."""
    port = free_port()
    out = lab.root / f"{name}.callgrind".replace(":", "-")
    args = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        *valgrind,
        f"--callgrind-out-file={out}",
        *worker_args(revision, port, *extra),
    ]
    log = (lab.root / f"{name}.log".replace(":", "-")).open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=source_env(src))
    try:
        wait_port(port, STARTUP_SECONDS)
        _wrk(port, 5)  # warm up: imports on first use, pools, the sink process
        requests, loaded = _window(proc.pid, lambda: _wrk(port, seconds))
        busy = _counted(lab, out)
        _, quiet = _window(proc.pid, _idle)
        idle = _counted(lab, out) - busy
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    return (busy - idle / quiet * loaded) / max(1, requests)


def run(
    targets: list[str], bases: list[tuple[str, Path]], seconds: int, valgrind: list[str]
) -> dict[str, float]:
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (make provision installs it)")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="portway-bench-instructions-") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        (root / "www" / "small.txt").write_bytes(b"hello, world\n")
        lab = Lab(root)
        try:
            backend = lab.start_backend()
            revisions = {
                "worker": revision_json(backend, 1, False),
                "one-policy": one_policy_revision(backend),
                "chain-local-nolog": chain_revision(backend),
                "chain-local": chain_revision(backend),
            }
            copies: list[tuple[str, Path | None]] = [(f"{n}:", src) for n, src in bases]
            copies.append(("", None))
            for target in targets:
                revision = root / f"{target}.json"
                revision.write_text(revisions[target])
                extra: list[str] = []
                if target != "worker":
                    extra = ["--cache", "local://"]
                for prefix, src in copies:
                    name = prefix + target
                    run_extra = list(extra)
                    if target == "chain-local":
                        db = root / f"{name}.db".replace(":", "-")
                        spool = root / f"{name}-spool".replace(":", "-")
                        run_extra += ["--logs", f"sqlite://{db}", "--spool-dir", str(spool)]
                    results[name] = count(lab, name, revision, run_extra, src, seconds, valgrind)
                    unit = "estimated cycles" if valgrind else "instructions"
                    print(f"{name:32} {results[name]:12,.0f} {unit}/request", flush=True)
        finally:
            lab.stop()
    return results


def table(results: dict[str, float], targets: list[str], bases: list[str]) -> str:
    head = "| target | " + " | ".join(f"{b} | now ÷ {b}" for b in bases)
    head += (" | " if bases else "") + "now | now ÷ worker |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    plain = results.get("worker")
    for target in targets:
        now = results[target]
        cells = [target]
        for base in bases:
            before = results[f"{base}:{target}"]
            cells += [f"{before / 1000:,.1f} k", f"{now / before:.3f}"]
        cells.append(f"{now / 1000:,.1f} k")
        cells.append(f"{now / plain:.2f}" if plain else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--base", action="append", default=[], help="[NAME=]SRC: a source tree to compare"
    )
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=15, help="counting window per target")
    parser.add_argument(
        "--cache-sim", action="store_true", help="estimated cycles with this core's caches"
    )
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    bases = parse_bases(args.base)
    results = run(targets, bases, args.seconds, cache_options() if args.cache_sim else [])
    print()
    print(table(results, targets, [name for name, _ in bases]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
