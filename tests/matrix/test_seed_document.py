"""The standard installation's Markdown reproduces every table and list of the seed document.

The seed is parsed at test time from ``shared/spec`` beside the repository, so a change to the
seed that the catalogue does not follow fails here.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from portway.matrix.diagram_ascii import ascii_diagram
from portway.matrix.effective import standard_matrix
from portway.matrix.render_markdown import render_markdown
from portway.matrix.rules import standard_rules
from tests.matrix.matrix_helpers import SEED


def _seed_text() -> str:
    assert SEED.exists(), f"the seed document is missing at {SEED.resolve()}"
    return SEED.read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def seed_tables() -> dict[str, list[list[str]]]:
    """Heading line before each table -> its data rows."""
    lines = _seed_text().splitlines()
    tables: dict[str, list[list[str]]] = defaultdict(list)
    for index, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            continue  # a header row
        start = index
        while lines[start - 1].startswith("|"):
            start -= 1
        tables[lines[start - 1].strip()].append(_cells(line))
    return tables


def markdown_tables(markdown: str) -> dict[str, list[list[str]]]:
    tables: dict[str, list[list[str]]] = defaultdict(list)
    heading = ""
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and not line.startswith("|---"):
            tables[heading].append(_cells(line))
    return tables


@pytest.fixture(scope="module")
def markdown() -> str:
    return render_markdown(standard_matrix(), standard_rules())


def _seed_section(start: str, end: str) -> list[str]:
    text = _seed_text()
    body = text[text.index(start) + len(start) : text.index(end)]
    return [line.strip() for line in body.splitlines() if line.strip()]


def _md_section(markdown: str, start: str) -> str:
    body = markdown[markdown.index(start) + len(start) :]
    following = re.search(r"^## ", body, flags=re.MULTILINE)
    return body[: following.start()] if following else body


def test_the_seed_has_the_tables_this_test_expects() -> None:
    tables = seed_tables()
    assert len(tables) == 7
    assert sum(len(rows) for rows in tables.values()) == 25


def test_markdown_contains_every_row_of_every_seed_table(markdown: str) -> None:
    ours = markdown_tables(markdown)
    missing = []
    for heading, rows in seed_tables().items():
        title = heading.replace("Apinizer", "Portway")
        assert title in ours, f"no table titled {title!r} in the markdown"
        ours_rows = [row[:6] for row in ours[title]]
        missing += [f"{title}: {row}" for row in rows if row not in ours_rows]
    assert missing == []


def _ports_of(token: str) -> list[str]:
    return [p for p in re.split(r"[/, ]+", token) if p.isdigit()]


def test_zone_port_lists_name_every_port_of_the_seed(markdown: str) -> None:
    """Each port the seed lists under a component of a zone appears in that component's list."""
    seed = _seed_section("Network Topology Based Port Requirements", "Firewall Rules Summary")
    section = _md_section(markdown, "## Network Topology Based Port Requirements")
    ours: dict[str, set[str]] = defaultdict(set)
    current = ""
    for line in section.splitlines():
        if line.startswith("**"):
            current = line.strip("*:")
        elif line.startswith("- "):
            ours[current].update(_ports_of(line[2:].split(":")[0]))
    checked = 0
    component = ""
    for line in seed:
        if line.endswith(":") and not line.startswith("-"):
            component = line.rstrip(":")
        elif line.startswith("- "):
            for port in _ports_of(line[2:].split(":")[0]):
                assert port in ours[component], f"{component}: port {port} missing"
                checked += 1
    assert checked == 17  # 6 worker, 3 load balancer, 4 manager, 1+2+1 data stores


# The seed puts SMTP under "External Services" in its rules summary; the matrix names the SMTP
# server as its own destination (as the seed's outbound table does).
SUMMARY_RENAMES = {("Manager", "External Services", "25"): "SMTP Server",
                   ("Manager", "External Services", "587"): "SMTP Server"}  # fmt: skip


def test_firewall_rules_summary_covers_the_seed(markdown: str) -> None:
    seed = _seed_section("Firewall Rules Summary", "Port Requirements - Component Based")
    section = _md_section(markdown, "## Firewall Rules Summary")
    ours: set[tuple[str, str, str, str, str]] = set()
    zone = direction = ""
    for line in section.splitlines():
        if line.startswith("### "):
            zone = line[4:].split()[0]
        elif line.rstrip(":") in ("Inbound", "Outbound"):
            direction = line.rstrip(":")
        elif line.startswith("- ") and "→" in line:
            pair, _, ports = line[2:].partition(": ")
            source, _, destination = pair.partition(" → ")
            for port in _ports_of(ports):
                ours.add((zone, direction, source, destination, port))
    checked = 0
    for line in seed:
        if line.endswith("Firewall Rules"):
            zone = line.split()[0]
        elif line.rstrip(":") in ("Inbound", "Outbound"):
            direction = line.rstrip(":")
        elif "→" in line:
            pair, _, ports = line.partition(": ")
            source, _, destination = pair.partition(" → ")
            for port in _ports_of(ports):
                target = SUMMARY_RENAMES.get((source, destination, port), destination)
                assert (zone, direction, source, target, port) in ours, line
                checked += 1
    assert checked == 23  # 10 DMZ, 13 LAN


def test_component_based_port_requirements_cover_the_seed(markdown: str) -> None:
    seed = _seed_section("Port Requirements - Component Based", "Network Security Best Practices")
    checked = 0
    node = ""
    for line in seed:
        if line.endswith("Node Ports"):
            node = line
            ours = _md_section(markdown, f"### {node}").split("\n### ")[0]
            listed = {p for row in ours.splitlines() if row.startswith("- ") for p in
                      _ports_of(row[2:].split(":")[0])}  # fmt: skip
        elif line.startswith("- ") and node:
            # "Dynamic: Kubernetes service discovery" is the cluster's, not a worker port.
            for port in _ports_of(line[2:].split(":")[0]):
                assert port in listed, f"{node}: port {port} missing"
                checked += 1
    assert checked == 18  # 9 worker, 9 manager


def test_ascii_diagram_draws_every_arrow_of_the_seed() -> None:
    seed = _seed_section("Traffic Flow Diagram", "Important:")
    ours = ascii_diagram(standard_matrix())
    arrows = [line for line in seed if "(" in line]
    assert len(arrows) == 7
    for line in arrows:
        ports, name = re.search(r"\(([\d/]+)\)\s*(.*)$", line).groups()  # type: ignore[union-attr]
        mine = [row for row in ours.splitlines() if f"({ports}" in row or f"/{ports})" in row]
        assert mine, f"no arrow with ports {ports} in the diagram: {line}"
        if name:
            assert any(row.endswith(name) for row in mine), line


def test_markdown_keeps_the_checklist_and_rules_sections(markdown: str) -> None:
    seed_items = _seed_section("Port Opening Checklist", "Traffic Flow Diagram")
    for item in seed_items:
        assert f"- [ ] {item.removeprefix('- ')}" in markdown
    assert "Never expose MongoDB and Elasticsearch ports to the Internet" in markdown
