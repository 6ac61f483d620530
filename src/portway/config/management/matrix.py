"""The network connection matrix the manager's settings describe (``GET /api/v1/matrix``): the
same document as ``portway matrix show --format json``, plus the zones, the verdict of each rule
``portway matrix check`` evaluates, the items ``portway matrix checklist`` answers (without audit
reports) and the ASCII diagram ``portway matrix show --format ascii`` draws."""

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


class MatrixViolation(Answer):
    flow: Annotated[str, Field(description="the id of the flow that breaks the rule")]
    message: str


class MatrixRuleVerdict(Answer):
    id: str
    title: str
    verdict: Annotated[Literal["pass", "fail"], Field(description="fail: a violation or more")]
    violations: list[MatrixViolation]


class MatrixChecklistItem(Answer):
    text: str
    status: Annotated[
        Literal["done", "failed", "no evidence", "needs a person"],
        Field(description="no evidence: an audit report would decide it, none was given"),
    ]
    evidence: str


class NetworkMatrix(Answer):
    schema_version: Annotated[str, Field(description="portway.matrix/v1")]
    zones: list[MatrixZone]
    components: list[MatrixComponent]
    tables: list[MatrixTable]
    flows: list[MatrixFlow]
    rules: Annotated[
        list[MatrixRuleVerdict], Field(description="`portway matrix check`, rule by rule")
    ]
    checklist: Annotated[
        list[MatrixChecklistItem],
        Field(description="`portway matrix checklist` without audit reports"),
    ]
    diagram: Annotated[str, Field(description="`portway matrix show --format ascii`")]
