"""Runs an audit: plan the probes, scan, check TLS and redirects, build the report."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from portway.matrix.audit.expectations import Expect, plan_probes, resolve_vantage
from portway.matrix.audit.report import AuditReport, ProbeResult
from portway.matrix.audit.scanner import Seen, connect_scan, nmap_scan
from portway.matrix.audit.tls_checks import RedirectResult, TlsResult, check_redirect, check_tls
from portway.matrix.inventory import Inventory
from portway.matrix.model import Matrix


@dataclass(frozen=True, slots=True)
class AuditOptions:
    vantage: str
    scanner: Literal["asyncio", "nmap"] = "asyncio"
    wait: float = 1.0
    concurrency: int = 256
    extra_ports: tuple[int, ...] = ()
    common_ports: bool = True
    ca_file: Path | None = None
    min_cert_days: int = 14


async def run_audit(matrix: Matrix, inventory: Inventory, options: AuditOptions) -> AuditReport:
    started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    vantage = resolve_vantage(matrix, inventory, options.vantage)
    probes, unprobed = plan_probes(
        matrix, inventory, vantage, options.extra_ports, options.common_ports
    )
    targets = [(p.address, p.port) for p in probes]
    if options.scanner == "nmap":
        seen = await nmap_scan(targets, options.wait)
    else:
        seen = await connect_scan(targets, options.wait, options.concurrency)
    results = tuple(ProbeResult(p, seen[(p.address, p.port)]) for p in probes)

    tls_jobs = []
    redirect_jobs = []
    for result in results:
        if result.observation.seen is not Seen.OPEN or result.probe.expect is Expect.CLOSED:
            continue
        host = inventory.host(result.probe.host)
        server_name = host.tls_server_name if host else None
        flows = [matrix.flow(f) for f in result.probe.flows if not f.endswith("(off)")]
        args = (result.probe.host, result.probe.address, result.probe.port, server_name)
        if any(f.is_tls and matrix.component(f.destination).portway for f in flows):
            tls_jobs.append(check_tls(*args, options.ca_file, options.min_cert_days))
        elif any(f.tls_redirect for f in flows):
            redirect_jobs.append(check_redirect(*args))
    tls: list[TlsResult] = list(await asyncio.gather(*tls_jobs))
    redirects: list[RedirectResult] = list(await asyncio.gather(*redirect_jobs))
    return AuditReport(
        vantage=vantage,
        scanner=options.scanner,
        started_at=started,
        probes=results,
        tls=tuple(tls),
        redirects=tuple(redirects),
        unprobed=tuple(unprobed),
    )
