"""The matrix as a Markdown document with the seed's sections, tables and lists.

Every table keeps the seed's columns first (Source, Destination, Port, Protocol, Description,
Required or Direction) and adds the stable flow id and its state (``on``/``off``).
"""

from __future__ import annotations

from portway.matrix.diagram_ascii import ascii_diagram
from portway.matrix.diagram_mermaid import mermaid_diagram
from portway.matrix.model import PLATFORM_ZONES, Flow, Matrix, Table
from portway.matrix.rules import Rule, check
from portway.matrix.summaries import (
    LIST_TITLES,
    NODE_TITLES,
    direction,
    firewall_summary,
    port_uses,
)

_CATEGORIES = """\
## Network Traffic Categories

### Inbound Traffic

From External World

- From Internet to Load Balancer
- From Clients to API Gateway

### Outbound Traffic

To External World

- To Backend APIs
- To External Services
- To Internet

### Internal Traffic

Between Components

- Manager ↔ Worker
- Worker ↔ Database
- Worker ↔ Cache
"""

_CHECKLIST = (
    "Only necessary ports are opened",
    "DMZ and LAN separation is implemented",
    "Firewall rules are configured with least privilege principle",
    "TLS/SSL certificates are configured",
    "Network segmentation is implemented",
    "Port scanning tests are performed",
    "Monitoring and alerting are configured",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(matrix: Matrix, table: Table) -> list[str]:
    flows = matrix.flows_in_table(table.id)
    header = ["Source", "Destination", "Port", "Protocol", "Description", table.last_column]
    header += ["Flow", "State"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for flow in flows:
        lines.append("| " + " | ".join(_cell(c) for c in _row(matrix, table, flow)) + " |")
    return lines


def _row(matrix: Matrix, table: Table, flow: Flow) -> list[str]:
    last = (
        ("Required" if flow.required else "Optional")
        if table.last_column == "Required"
        else direction(flow, matrix)
    )
    return [
        matrix.name(flow.source),
        matrix.name(flow.destination),
        flow.ports.label(),
        flow.protocol_label,
        flow.description,
        last,
        f"`{flow.id}`",
        "on" if flow.enabled else "off",
    ]


def render_markdown(matrix: Matrix, rules: tuple[Rule, ...]) -> str:
    out: list[str] = [
        "# Network Connection Matrix",
        "",
        "Network connections and port requirements between Portway components, computed from "
        "the installation's configuration by `portway matrix show`. Flow ids are stable: "
        "firewall rule comments and audit reports refer to them. A flow whose state is `off` "
        "is an optional flow this installation does not use: no rule opens it and an audit "
        "expects it closed.",
        "",
        _CATEGORIES,
        "## Port Matrix - Detailed Table",
        "",
    ]
    internal_started = False
    for table in matrix.tables:
        if not matrix.flows_in_table(table.id):
            continue
        if table.heading == "Internal Traffic":
            if not internal_started:
                out += ["### Internal Traffic (Between Components)", ""]
                internal_started = True
            out += [f"#### {table.title}", ""]
        else:
            out += [f"### {table.title}", ""]
        out += _table(matrix, table)
        out.append("")
    out += _zone_ports(matrix)
    out += _firewall_rules(matrix)
    out += _component_ports(matrix)
    out += _security_rules(matrix, rules)
    out += ["## Port Opening Checklist", ""]
    out += [f"- [ ] {item}" for item in _CHECKLIST]
    out += ["", "Answered from evidence by `portway matrix checklist`.", ""]
    out += ["## Traffic Flow Diagram", "", "```text", ascii_diagram(matrix).rstrip("\n"), "```"]
    out += ["", "```mermaid", mermaid_diagram(matrix).rstrip("\n"), "```", ""]
    return "\n".join(out)


def _zone_ports(matrix: Matrix) -> list[str]:
    out = ["## Network Topology Based Port Requirements", ""]
    for zone in PLATFORM_ZONES:
        out += [f"### {zone.title} Zone Ports", ""]
        for component in matrix.in_zone(zone):
            uses = port_uses(matrix, component.id)
            if not uses:
                continue
            out += [f"**{LIST_TITLES.get(component.id, component.name)}:**", ""]
            out += [f"- {use.text()}" for use in uses]
            out.append("")
    return out


def _firewall_rules(matrix: Matrix) -> list[str]:
    out = ["## Firewall Rules Summary", ""]
    for zone_rules in firewall_summary(matrix):
        out += [f"### {zone_rules.zone.title} Firewall Rules", "", "Inbound:", ""]
        out += [f"- {line.text()}" for line in zone_rules.inbound] or ["- (none)"]
        out += ["", "Outbound:", ""]
        out += [f"- {line.text()}" for line in zone_rules.outbound] or ["- (none)"]
        out.append("")
    return out


def _component_ports(matrix: Matrix) -> list[str]:
    out = ["## Port Requirements - Component Based", ""]
    for component in matrix.components:
        if not component.portway:
            continue
        uses = port_uses(matrix, component.id)
        out += [f"### {NODE_TITLES.get(component.id, component.name + ' Ports')}", ""]
        inbound = [u for u in uses if u.inbound]
        outbound = [u for u in uses if not u.inbound]
        out += ["Listening ports (inbound):", ""]
        out += [f"- {u.text()}" for u in inbound] or ["- (none)"]
        out += ["", "Connections it opens (outbound):", ""]
        out += [f"- {u.text()}" for u in outbound] or ["- (none)"]
        out.append("")
    return out


def _security_rules(matrix: Matrix, rules: tuple[Rule, ...]) -> list[str]:
    violations = check(matrix, rules)
    out = ["## Network Security Best Practices", "", "Security rules (`portway matrix check`):", ""]
    for rule in rules:
        broken = [v for v in violations if v.rule == rule.id]
        state = "violated" if broken else "holds"
        out.append(f"- {rule.title} (`{rule.id}`): {state}")
        out += [f"  - {v.message}" for v in broken]
    out.append("")
    return out
