"""The audit's result: each probe beside its flows and verdict, as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from portway.matrix.audit.expectations import Expect, Probe, Unprobed, Vantage
from portway.matrix.audit.scanner import Observation, Seen
from portway.matrix.audit.tls_checks import RedirectResult, TlsResult

SCHEMA = "portway.audit/v1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    probe: Probe
    observation: Observation

    @property
    def is_open(self) -> bool:
        return self.observation.seen is Seen.OPEN

    @property
    def violation(self) -> bool:
        if self.probe.expect is Expect.OPEN:
            return not self.is_open
        if self.probe.expect is Expect.CLOSED:
            return self.is_open
        return False

    @property
    def verdict(self) -> str:
        if not self.violation:
            return "ok"
        if self.probe.expect is Expect.OPEN:
            return "VIOLATION: required flow blocked"
        return "VIOLATION: open but not in the matrix"


@dataclass(frozen=True, slots=True)
class AuditReport:
    vantage: Vantage
    scanner: str
    started_at: str
    probes: tuple[ProbeResult, ...]
    tls: tuple[TlsResult, ...]
    redirects: tuple[RedirectResult, ...]
    unprobed: tuple[Unprobed, ...]

    @property
    def violations(self) -> int:
        return (
            sum(p.violation for p in self.probes)
            + sum(not t.ok for t in self.tls)
            + sum(not r.ok for r in self.redirects)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started_at": self.started_at,
            "scanner": self.scanner,
            "vantage": {
                "name": self.vantage.name,
                "components": list(self.vantage.components),
                "zone": self.vantage.zone.value,
            },
            "violations": self.violations,
            "probes": [
                {
                    "host": r.probe.host,
                    "address": r.probe.address,
                    "zone": r.probe.zone,
                    "port": r.probe.port,
                    "protocol": "tcp",
                    "expected": r.probe.expect.value,
                    "observed": r.observation.seen.value,
                    "detail": r.observation.detail,
                    "flows": list(r.probe.flows),
                    "verdict": "violation" if r.violation else "ok",
                }
                for r in self.probes
            ],
            "tls": [
                {
                    "host": t.host,
                    "address": t.address,
                    "port": t.port,
                    "ok": t.ok,
                    "version": t.version,
                    "days_left": t.days_left,
                    "detail": t.detail,
                }
                for t in self.tls
            ],
            "redirects": [
                {
                    "host": r.host,
                    "address": r.address,
                    "port": r.port,
                    "ok": r.ok,
                    "status": r.status,
                    "location": r.location,
                    "detail": r.detail,
                }
                for r in self.redirects
            ],
            "not_probed": [{"flow": u.flow, "reason": u.reason} for u in self.unprobed],
        }


def render_report_json(report: AuditReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


def render_report_table(report: AuditReport, only_violations: bool = False) -> str:
    v = report.vantage
    lines = [
        f"portway audit from {v.name} ({', '.join(v.components)}; zone {v.zone.value}) "
        f"at {report.started_at}, scanner {report.scanner}",
        "",
    ]
    rows = [("HOST", "ADDRESS", "PORT", "EXPECTED", "OBSERVED", "VERDICT", "FLOWS")]
    for r in report.probes:
        if only_violations and not r.violation:
            continue
        rows.append(
            (
                r.probe.host,
                r.probe.address,
                str(r.probe.port),
                r.probe.expect.value,
                r.observation.seen.value,
                r.verdict,
                ", ".join(r.probe.flows) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    if report.tls:
        lines += ["", "TLS"]
        for t in report.tls:
            days = f", {t.days_left} days left" if t.days_left is not None else ""
            state = "ok" if t.ok else "VIOLATION"
            lines.append(f"  {t.host} {t.address}:{t.port}  {state}  {t.detail}{days}")
    if report.redirects:
        lines += ["", "HTTP → HTTPS redirect"]
        for rd in report.redirects:
            state = "ok" if rd.ok else "VIOLATION"
            lines.append(f"  {rd.host} {rd.address}:{rd.port}  {state}  {rd.detail}")
    if report.unprobed:
        lines += ["", "Not probed"]
        lines += [f"  {u.flow}: {u.reason}" for u in report.unprobed]
    lines += ["", f"{report.violations} violation(s)"]
    return "\n".join(lines) + "\n"
