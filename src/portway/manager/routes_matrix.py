"""``/api/v1/matrix``: the network connection matrix this manager's settings describe, built as
``portway matrix show`` builds it (``portway.matrix.platform``); the other sections of the
installation (workers, load balancer, network) take their defaults."""

from __future__ import annotations

from fastapi import APIRouter

from portway.config.management.matrix import NetworkMatrix
from portway.config.platform import ManagerConfig, PlatformConfig
from portway.manager.deps import Reader, Svc
from portway.matrix.model import Zone
from portway.matrix.platform import matrix_for
from portway.matrix.render_data import matrix_document

router = APIRouter(tags=["matrix"])


@router.get("/matrix", response_model=NetworkMatrix)
async def network_matrix(svc: Svc, _: Reader) -> NetworkMatrix:
    """Zones, components, tables and flows (ports, protocol, direction, on/off)."""
    manager = ManagerConfig.model_validate(svc.settings.model_dump())
    matrix = matrix_for(PlatformConfig(manager=manager))[1]
    document = matrix_document(matrix)
    return NetworkMatrix.model_validate(
        {
            "schema_version": document.pop("schema"),
            "zones": [{"id": z.value, "title": z.title} for z in Zone],
            **document,
        }
    )
