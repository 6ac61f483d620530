"""CPU per request of the policy chain (issue 15): a steadier figure than req/s on a shared machine.

    python -m bench.chain_cpu [--base SRC] [--repeats 5] [--duration 4] [--targets a,b,...]

The policy bench's targets (``bench.policies``: the plain worker and the chains, same revision,
same ``X-Api-Key`` requests, one process each) are driven by ``wrk -t1 -c32`` in interleaved
repeats. Around each sample the CPU time (utime + stime from ``/proc/PID/stat``) of the worker
and of its child processes (the traffic sink's) is read, and divided by the requests wrk
completed: microseconds of CPU per request, for the worker and for the sink process. Other load
on the machine changes how fast requests arrive, but much less what each one costs.

``--base SRC`` (or ``--base NAME=SRC``, repeatable) starts another copy of every target from
another source tree (``SRC`` is a directory holding the ``portway`` package, e.g. ``src/`` of a
``git archive`` of an older commit), interleaved with the current one: paired before/after
figures of each change under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import redis_server

from bench.dataplane import Lab, free_port, revision_json, worker_args, wrk
from bench.policies import SCENARIO, chain_revision

TARGETS = (
    "worker",
    "chain-local-nolog",
    "chain-local",
    "chain-redis-nolog",
    "chain-redis",
    "chain-redis-batched",
)
_TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    """The live descendants of ``pid``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    found.extend(children(int(child)))
    return found


def _ticks_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # a child that just exited
            total += cpu_ticks(pid)
    return total


@dataclass
class CpuRow:
    target: str
    worker_us: list[float] = field(default_factory=list)
    sink_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)

    def line(self) -> str:
        worker = statistics.median(self.worker_us)
        sink = statistics.median(self.sink_us)
        total = statistics.median(w + s for w, s in zip(self.worker_us, self.sink_us, strict=True))
        return (
            f"| {self.target} | {worker:.0f} ({min(self.worker_us):.0f}-{max(self.worker_us):.0f})"
            f" | {sink:.0f} | {total:.0f} | {statistics.median(self.rps):,.0f} |"
        )


def parse_bases(given: list[str]) -> list[tuple[str, Path]]:
    """``--base [NAME=]SRC`` values as (name, source tree); the name defaults to ``base``."""
    bases = []
    for value in given:
        name, _, src = value.rpartition("=")
        bases.append((name or "base", Path(src)))
    return bases


def source_env(src: Path | None) -> dict[str, str] | None:
    """The environment of a process that imports ``portway`` from ``src`` (``None``: this one)."""
    if src is None:
        return None
    return dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{Path.cwd()}")


def _start_worker(lab: Lab, name: str, revision: Path, extra: list[str], src: Path | None) -> None:
    port = free_port()
    lab.start(name, [*worker_args(revision, port), *extra], port, env=source_env(src))


@contextlib.contextmanager
def cpu_lab(targets: list[str], bases: list[tuple[str, Path]]) -> Iterator[Lab]:
    with tempfile.TemporaryDirectory(prefix="portway-bench-cpu-") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        (root / "www" / "small.txt").write_bytes(b"hello, world\n")
        with contextlib.ExitStack() as stack:
            redis = None
            if any("redis" in name for name in targets):
                redis = stack.enter_context(redis_server(root))
            lab = Lab(root)
            try:
                backend = lab.start_backend()
                plain = root / "worker.json"
                plain.write_text(revision_json(backend, 1, False))
                chain = root / "chain.json"
                chain.write_text(chain_revision(backend))
                batched = root / "chain-batched.json"
                batched.write_text(chain_revision(backend, "batched"))
                copies: list[tuple[str, Path | None]] = [(f"{n}:", src) for n, src in bases]
                copies.append(("", None))
                for prefix, src in copies:
                    for name in targets:
                        extra: list[str] = []
                        revision = plain
                        if name != "worker":
                            revision = batched if "batched" in name else chain
                            cache = "local://"
                            if "redis" in name and redis is not None:
                                cache = f"redis://127.0.0.1:{redis.port}/0"
                            extra = ["--cache", cache]
                            if not name.endswith("-nolog"):
                                db = root / f"{prefix}{name}.db".replace(":", "-")
                                spool = root / f"{prefix}{name}-spool".replace(":", "-")
                                extra += ["--logs", f"sqlite://{db}", "--spool-dir", str(spool)]
                        _start_worker(lab, prefix + name, revision, extra, src)
                yield lab
            finally:
                lab.stop()


def measure(lab: Lab, target: str, row: CpuRow) -> None:
    pid = lab.pids[target]
    kids = children(pid)
    before_worker, before_kids = cpu_ticks(pid), _ticks_of(kids)
    sample = wrk(lab, SCENARIO, target)
    after_worker, after_kids = cpu_ticks(pid), _ticks_of(kids)
    requests = max(1, sample.requests)
    row.worker_us.append((after_worker - before_worker) * _TICK_US / requests)
    row.sink_us.append((after_kids - before_kids) * _TICK_US / requests)
    row.rps.append(sample.rps)


def profile(lab: Lab, target: str, out: Path, py_spy: str, seconds: int) -> None:
    """py-spy on the worker (sink process included) while wrk drives it."""
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{lab.ports[target]}{SCENARIO.path}"
    load = subprocess.Popen(
        ["wrk", "-t1", "-c32", f"-d{seconds + 2}s", "-H", SCENARIO.headers[0], url],
        stdout=subprocess.DEVNULL,
    )
    try:
        name = target.replace(":", "-")
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
            args = [py_spy, "record", "-r", "250", "-d", str(seconds // 2 or 1), "--nonblocking"]
            args += ["--subprocesses", "-p", str(lab.pids[target]), "-f", fmt]
            args += ["-o", str(out / f"{name}.{suffix}")]
            subprocess.run(
                args,
                check=True,
                capture_output=True,
            )
    finally:
        load.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chain_cpu", description=__doc__)
    parser.add_argument(
        "--base", action="append", default=[], help="[NAME=]SRC: a source tree to compare"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per sample")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also record py-spy profiles (flame graph svg + collapsed stacks) into this directory",
    )
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy binary")
    args = parser.parse_args(argv)
    import bench.dataplane

    bench.dataplane.DURATION = args.duration
    targets = [t for t in args.targets.split(",") if t]
    bases = parse_bases(args.base)
    with cpu_lab(targets, bases) as lab:
        names = [n for n in lab.pids if n != "direct"]
        for name in names:  # warm up: imports, pools, the Redis connection, the sink process
            url = f"http://127.0.0.1:{lab.ports[name]}{SCENARIO.path}"
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d2s", "-H", SCENARIO.headers[0], url],
                capture_output=True,
                check=True,
            )
        rows = {name: CpuRow(name) for name in names}
        for repeat in range(args.repeats):
            for name in names:
                measure(lab, name, rows[name])
                row = rows[name]
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:26} worker {row.worker_us[-1]:6.0f} µs"
                    f"  sink {row.sink_us[-1]:5.0f} µs  {row.rps[-1]:9,.0f} req/s",
                    flush=True,
                )
        if args.profile is not None:
            for name in names:
                profile(lab, name, args.profile, args.py_spy, args.duration)
    print()
    print("| target | worker µs/req median (min-max) | sink µs/req | total µs/req | req/s |")
    print("|---|---|---|---|---|")
    for row in rows.values():
        print(row.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
