"""Which Portway components a declarative generator (Kubernetes, AWS) writes objects for."""

from __future__ import annotations

from portway.matrix.errors import MatrixError
from portway.matrix.firewall.plan import resolve_host
from portway.matrix.inventory import Inventory
from portway.matrix.model import Matrix, Zone


def selected_components(
    matrix: Matrix, inventory: Inventory | None, zone: Zone | None, host: str | None
) -> tuple[str, ...]:
    """Every Portway component, or those of one zone, or those one host runs."""
    portway = tuple(c.id for c in matrix.components if c.portway)
    if host is not None:
        chosen = resolve_host(matrix, inventory, host).components
        foreign = [c for c in chosen if c not in portway]
        if foreign:
            raise MatrixError(f"--host {host}: {', '.join(foreign)} is not a Portway component")
        return chosen
    if zone is not None:
        chosen = tuple(c for c in portway if matrix.zone_of(c) is zone)
        if not chosen:
            raise MatrixError(f"--zone {zone.value}: no Portway component runs in that zone")
        return chosen
    return portway
