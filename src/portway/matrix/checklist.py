"""The seed's "Port Opening Checklist", each item answered from evidence or handed to a person.

Evidence is the effective matrix, its rule check, and audit reports (``portway audit --format
json``). An item is ``done`` or ``failed`` when the evidence decides it, ``no evidence`` when an
audit would decide it but none was given, and ``needs a person`` when no tool here can.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from portway.matrix.rules import Violation


class Status(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    NO_EVIDENCE = "no evidence"
    NEEDS_PERSON = "needs a person"

    @property
    def box(self) -> str:
        return {"done": "[x]", "failed": "[!]"}.get(self.value, "[ ]")


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    status: Status
    evidence: str


def _unexpected_open(audits: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{p['host']}:{p['port']} from {a['vantage']['name']}"
        for a in audits
        for p in a["probes"]
        if p["verdict"] == "violation" and p["expected"] == "closed"
    ]


def _blocked(audits: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{p['host']}:{p['port']} from {a['vantage']['name']}"
        for a in audits
        for p in a["probes"]
        if p["verdict"] == "violation" and p["expected"] == "open"
    ]


def _names(audits: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{a['vantage']['name']} ({a['vantage']['zone']})" for a in audits)


def _short(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def checklist(violations: Sequence[Violation], audits: Sequence[dict[str, Any]]) -> list[Item]:
    broken = {v.rule for v in violations}
    probes = sum(len(a["probes"]) for a in audits)
    unexpected = _unexpected_open(audits)
    blocked = _blocked(audits)
    items: list[Item] = []

    if unexpected:
        items.append(
            Item(
                "Only necessary ports are opened",
                Status.FAILED,
                f"open but not in the matrix: {_short(unexpected)}",
            )
        )
    elif audits:
        items.append(
            Item(
                "Only necessary ports are opened",
                Status.DONE,
                f"audits from {_names(audits)}: no port open outside the matrix ({probes} probes)",
            )
        )
    else:
        items.append(
            Item(
                "Only necessary ports are opened",
                Status.NO_EVIDENCE,
                "run `portway audit` from each zone and pass its JSON reports",
            )
        )

    lan_from_internet = [
        f"{p['host']}:{p['port']}"
        for a in audits
        if a["vantage"]["zone"] == "internet"
        for p in a["probes"]
        if "lan" in p["zone"].split("+") and p["observed"] == "open"
    ]
    internet_audited = any(a["vantage"]["zone"] == "internet" for a in audits)
    if "dmz-lan-segmentation" in broken or lan_from_internet:
        why = [v.message for v in violations if v.rule == "dmz-lan-segmentation"]
        why += [f"{x} answers from the Internet" for x in lan_from_internet]
        items.append(Item("DMZ and LAN separation is implemented", Status.FAILED, _short(why)))
    elif internet_audited:
        items.append(
            Item(
                "DMZ and LAN separation is implemented",
                Status.DONE,
                "no flow from the Internet into the LAN, and no LAN port answered "
                "the audit from the Internet",
            )
        )
    else:
        items.append(
            Item(
                "DMZ and LAN separation is implemented",
                Status.NO_EVIDENCE,
                "the matrix keeps the Internet out of the LAN; an audit from the "
                "Internet must confirm it",
            )
        )

    if "default-deny" in broken or unexpected:
        why = [v.message for v in violations if v.rule == "default-deny"] + unexpected
        items.append(
            Item(
                "Firewall rules are configured with least privilege principle",
                Status.FAILED,
                _short(why),
            )
        )
    elif audits:
        items.append(
            Item(
                "Firewall rules are configured with least privilege principle",
                Status.DONE,
                "every flow names its ports; generated rules are default "
                "deny and the audits found nothing open beyond them",
            )
        )
    else:
        items.append(
            Item(
                "Firewall rules are configured with least privilege principle",
                Status.NO_EVIDENCE,
                "every flow names its ports (`portway matrix "
                "firewall` writes default-deny rules); an audit must show they are "
                "installed",
            )
        )

    tls = [t for a in audits for t in a["tls"]]
    if "tls-on-internet-facing" in broken or any(not t["ok"] for t in tls):
        why = [v.message for v in violations if v.rule == "tls-on-internet-facing"]
        why += [f"{t['host']}:{t['port']}: {t['detail']}" for t in tls if not t["ok"]]
        items.append(Item("TLS/SSL certificates are configured", Status.FAILED, _short(why)))
    elif tls:
        least = min((t["days_left"] for t in tls if t["days_left"] is not None), default=None)
        items.append(
            Item(
                "TLS/SSL certificates are configured",
                Status.DONE,
                f"{len(tls)} TLS endpoint(s) verified; the nearest certificate "
                f"expiry is in {least} days",
            )
        )
    else:
        items.append(
            Item(
                "TLS/SSL certificates are configured",
                Status.NO_EVIDENCE,
                "no audit checked an HTTPS listener",
            )
        )

    zones = {a["vantage"]["zone"] for a in audits}
    if blocked or unexpected:
        items.append(
            Item("Network segmentation is implemented", Status.FAILED, _short(blocked + unexpected))
        )
    elif len(zones) >= 2:
        items.append(
            Item(
                "Network segmentation is implemented",
                Status.DONE,
                f"audits from {len(zones)} zones ({', '.join(sorted(zones))}) match the matrix",
            )
        )
    else:
        items.append(
            Item(
                "Network segmentation is implemented",
                Status.NO_EVIDENCE,
                "needs audits from at least two zones",
            )
        )

    if audits:
        when = ", ".join(sorted({a["started_at"] for a in audits}))
        items.append(
            Item(
                "Port scanning tests are performed",
                Status.DONE,
                f"{len(audits)} audit(s) from {_names(audits)} at {when}",
            )
        )
    else:
        items.append(
            Item("Port scanning tests are performed", Status.NO_EVIDENCE, "no audit report given")
        )

    items.append(
        Item(
            "Monitoring and alerting are configured",
            Status.NEEDS_PERSON,
            "the matrix cannot see monitoring: confirm alerts on firewall drops, "
            "certificate expiry and worker health",
        )
    )
    return items  # fmt: skip


def render_checklist(items: Sequence[Item]) -> str:
    lines = ["# Port Opening Checklist", ""]
    for item in items:
        lines.append(f"- {item.status.box} {item.text} — {item.status.value}: {item.evidence}")
    return "\n".join(lines) + "\n"
