"""The management API (``/api/v1``): REST + JSON, documented by the OpenAPI document at
``/api/v1/openapi.json``. The web UI and the CLI use exactly this API.

Routes live in ``routes_*`` modules by subject; each declares the permission it needs through
``deps`` (``Reader``, ``ApiWriter``, ``DeployerRole``, …), which the authorization-matrix test
walks for every role.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from portway.manager import (
    routes_access,
    routes_analytics,
    routes_capabilities,
    routes_catalog,
    routes_consumers,
    routes_declarative,
    routes_deployments,
)
from portway.manager.problems import COMMON_RESPONSES
from portway.manager.query_check import no_unknown_query
from portway.manager.responses import MaskedJSONResponse

router = APIRouter(
    prefix="/api/v1",
    responses=COMMON_RESPONSES,
    default_response_class=MaskedJSONResponse,
    dependencies=[Depends(no_unknown_query)],
)
for _module in (
    routes_access,
    routes_catalog,
    routes_deployments,
    routes_consumers,
    routes_declarative,
    routes_analytics,
    routes_capabilities,
):
    router.include_router(_module.router)
