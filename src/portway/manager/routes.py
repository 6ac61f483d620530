"""The management API (``/api/v1``): REST + JSON, documented by the OpenAPI document at
``/api/v1/openapi.json``. The web UI and the CLI use exactly this API.
Every operation's request and response models live in ``portway.config.management``.

Routes live in ``routes_*`` modules by subject; each declares the permission it needs through
``deps`` (``Reader``, ``ApiWriter``, ``DeployerRole``, …), which the authorization-matrix test
walks for every role.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from portway.manager import (
    routes_access,
    routes_alerts,
    routes_analytics,
    routes_capabilities,
    routes_catalog,
    routes_consumers,
    routes_declarative,
    routes_deployments,
    routes_matrix,
    routes_signing_keys,
    routes_variables,
)
from portway.manager.deps import query_check
from portway.manager.problems import COMMON_RESPONSES
from portway.manager.responses import MaskedJSONResponse

# Each answer is validated against its operation's response model and rendered by it: a field
# the handler did not set is there with the model's default (``null``, ``[]``).
router = APIRouter(
    prefix="/api/v1",
    responses=COMMON_RESPONSES,
    default_response_class=MaskedJSONResponse,
    dependencies=[Depends(query_check)],
)
for _module in (
    routes_access,
    routes_catalog,
    routes_deployments,
    routes_consumers,
    routes_signing_keys,
    routes_declarative,
    routes_analytics,
    routes_alerts,
    routes_matrix,
    routes_capabilities,
    routes_variables,
):
    router.include_router(_module.router)
