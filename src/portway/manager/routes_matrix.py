"""``/api/v1/matrix``: the network connection matrix this manager's settings describe, built as
``portway matrix show`` builds it (``portway.matrix.platform``); the other sections of the
installation (workers, load balancer, network) take their defaults. The rule verdicts, the
checklist and the diagram are those of ``portway matrix check``, ``checklist`` and ``show --format
ascii``."""

from __future__ import annotations

from fastapi import APIRouter

from portway.config.management.matrix import NetworkMatrix
from portway.config.platform import ManagerConfig, PlatformConfig
from portway.manager.deps import Reader, Svc
from portway.matrix.checklist import checklist
from portway.matrix.diagram_ascii import ascii_diagram
from portway.matrix.model import Matrix, Zone
from portway.matrix.platform import matrix_for
from portway.matrix.render_data import matrix_document
from portway.matrix.rules import check, standard_rules
from portway.matrix.settings import MatrixSettings

router = APIRouter(tags=["matrix"])


def matrix_answer(settings: MatrixSettings, matrix: Matrix) -> NetworkMatrix:
    """The answer for ``matrix``: its document, the verdict of each standard rule, the checklist
    (no audit report: the audit items have no evidence) and the ASCII diagram."""
    rules = standard_rules(settings)
    violations = check(matrix, rules)
    document = matrix_document(matrix)
    return NetworkMatrix.model_validate(
        {
            "schema_version": document.pop("schema"),
            "zones": [{"id": z.value, "title": z.title} for z in Zone],
            **document,
            "rules": [
                {
                    "id": rule.id,
                    "title": rule.title,
                    "verdict": "fail" if any(v.rule == rule.id for v in violations) else "pass",
                    "violations": [
                        {"flow": v.flow, "message": v.message}
                        for v in violations
                        if v.rule == rule.id
                    ],
                }
                for rule in rules
            ],
            "checklist": [
                {"text": i.text, "status": i.status.value, "evidence": i.evidence}
                for i in checklist(violations, [])
            ],
            "diagram": ascii_diagram(matrix),
        }
    )


@router.get("/matrix", response_model=NetworkMatrix)
async def network_matrix(svc: Svc, _: Reader) -> NetworkMatrix:
    """Zones, components, tables and flows (ports, protocol, direction, on/off), the verdict of
    each security rule, the port opening checklist and an ASCII diagram."""
    manager = ManagerConfig.model_validate(svc.settings.model_dump())
    return matrix_answer(*matrix_for(PlatformConfig(manager=manager)))
