"""The management API (``/api/v1``): REST + JSON, documented by the OpenAPI document at
``/api/v1/openapi.json``. The web UI and the CLI use exactly this API.
Every operation's request and response models live in ``portway.config.management``.

Routes live in ``routes_*`` modules by subject; each declares the permission it needs through
``deps`` (``Reader``, ``ApiWriter``, ``DeployerRole``, …), which the authorization-matrix test
walks for every role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


class ContractRouter(APIRouter):
    """The ``/api/v1`` router: each answer is validated against its operation's response model
    and rendered with the fields the handler set (nothing added, nothing renamed)."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().add_api_route(path, endpoint, **kwargs)


router = ContractRouter(
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
