"""The network connection matrix the manager's settings describe (``GET /api/v1/matrix``): the
same document as ``portway matrix show --format json``, plus the zones."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from portway.config.management.common import Answer


class MatrixZone(Answer):
    id: str
    title: str


class MatrixComponent(Answer):
    id: str
    name: str
    zone: str
    portway: Annotated[bool, Field(description="a Portway process (not a third-party service)")]
    description: str


class MatrixTable(Answer):
    id: str
    title: str
    last_column: str


class MatrixFlow(Answer):
    id: str
    category: Literal["inbound", "outbound", "internal"]
    table: Annotated[str, Field(description="the id of the table the flow is listed in")]
    source: str
    destination: str
    source_zone: str
    destination_zone: str
    ports: Annotated[
        list[int] | Literal["dynamic"], Field(description="port numbers, or dynamic (ephemeral)")
    ]
    transports: list[str]
    protocol: str
    description: str
    required: bool
    direction: Annotated[str, Field(description="`Manager → Worker`, `A ↔ B` when both ways")]
    bidirectional: bool
    enabled: Annotated[bool, Field(description="off: the installation does not use this flow")]


class NetworkMatrix(Answer):
    schema_version: Annotated[str, Field(description="portway.matrix/v1")]
    zones: list[MatrixZone]
    components: list[MatrixComponent]
    tables: list[MatrixTable]
    flows: list[MatrixFlow]
