"""TCP connect scanning: asyncio by default, nmap (``-sT``) when asked for."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from portway.matrix.errors import MatrixError


class Seen(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # refused: the host answered with a reset
    FILTERED = "filtered"  # no answer in time: dropped
    UNREACHABLE = "unreachable"  # an ICMP error (rejected, no route)
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Observation:
    seen: Seen
    detail: str = ""


Target = tuple[str, int]


async def _connect(address: str, port: int, wait: float) -> Observation:
    try:
        async with asyncio.timeout(wait):
            _, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return Observation(Seen.FILTERED, f"no answer in {wait:g}s")
    except ConnectionRefusedError:
        return Observation(Seen.CLOSED, "connection refused")
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
            return Observation(Seen.UNREACHABLE, exc.strerror or str(exc))
        return Observation(Seen.ERROR, str(exc))
    writer.close()
    with contextlib.suppress(OSError):  # a peer may reset a connection we only opened
        await writer.wait_closed()
    return Observation(Seen.OPEN)


async def connect_scan(
    targets: Iterable[Target], wait: float = 1.0, concurrency: int = 256
) -> dict[Target, Observation]:
    gate = asyncio.Semaphore(concurrency)

    async def one(target: Target) -> tuple[Target, Observation]:
        async with gate:
            return target, await _connect(target[0], target[1], wait)

    results = await asyncio.gather(*(one(t) for t in dict.fromkeys(targets)))
    return dict(results)


def parse_nmap_xml(text: str) -> dict[Target, Observation]:
    """Port states of ``nmap -oX -`` output."""
    root = ET.fromstring(text)  # noqa: S314 -- nmap's own output, produced by this process
    states = {
        "open": Seen.OPEN,
        "closed": Seen.CLOSED,
        "filtered": Seen.FILTERED,
        "open|filtered": Seen.FILTERED,
        "unfiltered": Seen.CLOSED,
        "closed|filtered": Seen.FILTERED,
    }
    out: dict[Target, Observation] = {}
    for host in root.iter("host"):
        address_el = host.find("address")
        if address_el is None:
            continue
        address = address_el.get("addr", "")
        for port_el in host.iter("port"):
            state_el = port_el.find("state")
            state = state_el.get("state", "") if state_el is not None else ""
            reason = state_el.get("reason", "") if state_el is not None else ""
            seen = states.get(state, Seen.ERROR)
            out[(address, int(port_el.get("portid", "0")))] = Observation(seen, reason)
    return out


async def nmap_scan(targets: Iterable[Target], wait: float = 1.0) -> dict[Target, Observation]:
    nmap = shutil.which("nmap")
    if nmap is None:
        raise MatrixError("--scanner nmap: nmap is not installed (apt-get install nmap)")
    wanted = list(dict.fromkeys(targets))
    addresses = sorted({a for a, _ in wanted})
    ports = sorted({p for _, p in wanted})
    command = [
        nmap, "-sT", "-Pn", "-n", "--max-retries", "1",
        "--max-rtt-timeout", f"{int(wait * 1000)}ms",
        "-p", ",".join(map(str, ports)), "-oX", "-", *addresses,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise MatrixError(f"nmap failed ({process.returncode}): {stderr.decode().strip()}")
    seen = parse_nmap_xml(stdout.decode())
    missing = Observation(Seen.ERROR, "not in nmap's report")
    return {t: seen.get(t, missing) for t in wanted}
