"""The seed's traffic flow diagram, drawn from the effective matrix (ports follow the config)."""

from __future__ import annotations

from portway.matrix.model import Flow, Matrix

# Fan-out order of the seed's diagram; destinations it does not draw come after, in catalogue order.
_FAN_OUT_ORDER = ("mongodb", "elasticsearch", "cache", "manager", "backend_api")


def _ports(flows: list[Flow]) -> str:
    return "/".join(dict.fromkeys(f.ports.label() for f in flows))


def _box(label: str, width: int, indent: str, stem_below: bool) -> list[str]:
    inner = width - 2
    bottom = "┬".join(["─" * (inner // 2), "─" * (inner - inner // 2 - 1)])
    return [
        f"{indent}┌{'─' * inner}┐",
        f"{indent}│{label.center(inner)}│",
        f"{indent}└{bottom if stem_below else '─' * inner}┘",
    ]


def ascii_diagram(matrix: Matrix) -> str:
    """Internet → load balancer → worker, then the worker's outbound fan-out."""
    flows = matrix.enabled_flows
    width = 17
    indent = "    "
    stem = indent + " " * ((width - 2) // 2 + 1)
    lines = [stem[: -len("Internet") // 2] + "Internet"]
    lines.append(f"{stem}│")
    inbound = [f for f in flows if f.source == "internet" and f.destination == "load_balancer"]
    lines.append(f"{stem}▼ ({_ports(inbound)})" if inbound else f"{stem}▼ (no inbound flow)")
    lines += _box("Load Balancer", width, indent, stem_below=True)
    to_worker = [f for f in flows if f.source == "load_balancer" and f.destination == "worker"]
    lines.append(f"{stem}│ ({_ports(to_worker)})")
    lines.append(f"{stem}▼")
    lines += _box("Worker Node", width, indent, stem_below=True)
    lines.append(f"{stem}│")
    fan: dict[str, list[Flow]] = {}
    for flow in flows:
        if flow.source == "worker" and flow.destination != "worker":
            fan.setdefault(flow.destination, []).append(flow)
    order = [d for d in _FAN_OUT_ORDER if d in fan] + [d for d in fan if d not in _FAN_OUT_ORDER]
    for index, destination in enumerate(order):
        joint = "└" if index == len(order) - 1 else "├"
        lines.append(f"{stem}{joint}───► ({_ports(fan[destination])}) {matrix.name(destination)}")
    return "\n".join(lines) + "\n"
