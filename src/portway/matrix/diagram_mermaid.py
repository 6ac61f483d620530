"""A Mermaid flowchart of every flow, components grouped by zone; switched-off flows dashed."""

from __future__ import annotations

from portway.matrix.model import Flow, Matrix, Zone


def mermaid_diagram(matrix: Matrix) -> str:
    used = {c for f in matrix.flows for c in (f.source, f.destination)}
    lines = ["flowchart LR"]
    for zone in Zone:
        members = [c for c in matrix.in_zone(zone) if c.id in used]
        if not members:
            continue
        lines.append(f'  subgraph zone_{zone.value}["{zone.title}"]')
        for component in members:
            lines.append(f'    {component.id}["{component.name}"]')
        lines.append("  end")
    edges: dict[tuple[str, str, str, bool, bool], list[Flow]] = {}
    for flow in matrix.flows:
        label = f"{flow.ports.label()} {flow.protocol_label}"
        key = (flow.source, flow.destination, label, flow.bidirectional, flow.enabled)
        edges.setdefault(key, []).append(flow)
    for (source, destination, label, bidirectional, enabled), flows in edges.items():
        ids = ", ".join(f.id for f in flows)
        text = f"{label}<br/>{ids}" + ("" if enabled else " (off)")
        if not enabled:
            arrow = "-.->"
        elif bidirectional:
            arrow = "<-->"
        else:
            arrow = "-->"
        lines.append(f'  {source} {arrow}|"{text}"| {destination}')
    return "\n".join(lines) + "\n"
