"""The matrix as JSON (one document) and CSV (one row per flow)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from portway.matrix.model import Flow, Matrix
from portway.matrix.summaries import direction

SCHEMA = "portway.matrix/v1"

CSV_COLUMNS = (
    "id",
    "category",
    "table",
    "source",
    "destination",
    "source_zone",
    "destination_zone",
    "ports",
    "transports",
    "protocol",
    "description",
    "required",
    "direction",
    "enabled",
)


def flow_record(flow: Flow, matrix: Matrix) -> dict[str, Any]:
    return {
        "id": flow.id,
        "category": flow.category.value,
        "table": flow.table,
        "source": flow.source,
        "destination": flow.destination,
        "source_zone": matrix.zone_of(flow.source).value,
        "destination_zone": matrix.zone_of(flow.destination).value,
        "ports": "dynamic" if flow.ports.dynamic else list(flow.ports.numbers),
        "transports": [t.value for t in flow.transports],
        "protocol": flow.protocol_label,
        "description": flow.description,
        "required": flow.required,
        "direction": direction(flow, matrix),
        "bidirectional": flow.bidirectional,
        "enabled": flow.enabled,
    }


def matrix_document(matrix: Matrix) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "components": [
            {
                "id": c.id,
                "name": c.name,
                "zone": c.zone.value,
                "portway": c.portway,
                "description": c.description,
            }
            for c in matrix.components
        ],
        "tables": [
            {"id": t.id, "title": t.title, "last_column": t.last_column} for t in matrix.tables
        ],
        "flows": [flow_record(f, matrix) for f in matrix.flows],
    }


def render_json(matrix: Matrix) -> str:
    return json.dumps(matrix_document(matrix), indent=2, ensure_ascii=False) + "\n"


def render_csv(matrix: Matrix) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for flow in matrix.flows:
        record = flow_record(flow, matrix)
        ports = record["ports"]
        record["ports"] = ports if isinstance(ports, str) else "/".join(map(str, ports))
        record["transports"] = "/".join(record["transports"])
        record["required"] = "required" if flow.required else "optional"
        record["enabled"] = "on" if flow.enabled else "off"
        del record["bidirectional"]
        writer.writerow(record)
    return buffer.getvalue()
