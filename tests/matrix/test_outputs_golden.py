"""Every renderer and generator against its golden file (PORTWAY_UPDATE_GOLDEN=1 rewrites them),
and every output follows a configuration change."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from portway.config.platform_file import load_platform
from portway.matrix.checklist import checklist, render_checklist
from portway.matrix.diagram_ascii import ascii_diagram
from portway.matrix.diagram_mermaid import mermaid_diagram
from portway.matrix.effective import standard_matrix
from portway.matrix.firewall import aws, iptables, kubernetes, nftables
from portway.matrix.firewall.plan import resolve_host, resolve_zone
from portway.matrix.firewall.scope import selected_components
from portway.matrix.inventory import Inventory, load_inventory
from portway.matrix.model import Matrix, Zone
from portway.matrix.platform import matrix_for
from portway.matrix.render_data import CSV_COLUMNS, render_csv, render_json
from portway.matrix.render_markdown import render_markdown
from portway.matrix.rules import check, standard_rules
from portway.matrix.settings import MatrixSettings
from tests.matrix.matrix_helpers import DATA, assert_golden


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(DATA / "inventory.yaml")


def all_outputs(matrix: Matrix, settings: MatrixSettings, inventory: Inventory) -> dict[str, str]:
    header = "golden"
    out = {
        "standard.md": render_markdown(matrix, standard_rules(settings)),
        "standard.json": render_json(matrix),
        "standard.csv": render_csv(matrix),
        "standard.mmd": mermaid_diagram(matrix),
        "standard.txt": ascii_diagram(matrix),
        "k8s.yaml": kubernetes.render_kubernetes(
            matrix, settings, inventory, selected_components(matrix, inventory, None, None), header
        ),
        "aws.tf.json": aws.render_aws(
            matrix, inventory, selected_components(matrix, inventory, None, None), header
        ),
        "aws-dmz.tf.json": aws.render_aws(
            matrix, inventory, selected_components(matrix, inventory, Zone.DMZ, None), header
        ),
    }
    for host in ("lb-1", "worker-1", "manager-1", "data-1"):
        scope = resolve_host(matrix, inventory, host)
        table = nftables.build_table(matrix, inventory, scope)
        out[f"nft-host-{host}.nft"] = nftables.render_text(table, header)
        out[f"nft-host-{host}.json"] = nftables.render_json(table, header)
        out[f"iptables-host-{host}.rules"] = iptables.render_iptables(
            matrix, inventory, scope, header
        )
    for zone in (Zone.DMZ, Zone.LAN):
        zone_scope = resolve_zone(inventory, zone, "test")
        table = nftables.build_table(matrix, inventory, zone_scope)
        out[f"nft-zone-{zone.value}.nft"] = nftables.render_text(table, header)
        out[f"nft-zone-{zone.value}.json"] = nftables.render_json(table, header)
        out[f"iptables-zone-{zone.value}.rules"] = iptables.render_iptables(
            matrix, inventory, zone_scope, header
        )
    out["checklist.md"] = render_checklist(checklist(check(matrix, standard_rules()), []))
    return out


STANDARD_NAMES = sorted(all_outputs(standard_matrix(), MatrixSettings(),
                                     load_inventory(DATA / "inventory.yaml")))  # fmt: skip


@pytest.mark.parametrize("name", STANDARD_NAMES)
def test_golden(name: str, inventory: Inventory) -> None:
    assert_golden(name, all_outputs(standard_matrix(), MatrixSettings(), inventory)[name])


def test_custom_configuration_changes_every_output(inventory: Inventory) -> None:
    """portway.yaml with MongoDB on 27017 and no plain-HTTP backends: no output keeps the old
    values."""
    settings, matrix = matrix_for(load_platform(DATA / "custom.yaml"))
    outputs = all_outputs(matrix, settings, inventory)
    standard = all_outputs(standard_matrix(), MatrixSettings(), inventory)
    for name, text in outputs.items():
        if name == "checklist.md":
            continue
        mentions_mongodb = "25080" in standard[name]
        if mentions_mongodb:
            assert "25080" not in text, name
            # only the manager opens the store (so the DMZ and the worker's diagram have neither)
            assert "27017" in text or "dmz" in name or "worker" in name or "txt" in name, name
        if name.startswith(("nft-", "iptables-", "k8s", "aws")):
            # no rule for a switched-off flow (the -https flow shares the prefix)
            assert not re.search(r"out-worker-backend-http(?!s)", text), name
    assert "| `out-worker-backend-http` | off |" in outputs["standard.md"]
    assert "(443) Backend API" in outputs["standard.txt"]


def test_json_document_lists_every_flow_with_its_state() -> None:
    document = json.loads(render_json(standard_matrix()))
    assert document["schema"] == "portway.matrix/v1"
    flows = {f["id"]: f for f in document["flows"]}
    assert flows["int-worker-mongodb"]["ports"] == [25080]
    assert flows["k8s-pod-pod"]["ports"] == "dynamic"
    assert flows["in-lb-ssh"]["enabled"] is False
    assert flows["out-manager-smtp"]["direction"] == "Manager → SMTP Server"


def test_csv_has_one_row_per_flow() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(standard_matrix()))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(standard_matrix().flows)
    smtp = next(r for r in rows if r["id"] == "out-manager-smtp")
    assert (smtp["ports"], smtp["required"], smtp["enabled"]) == ("25/587", "optional", "on")
