"""What a client needs to build itself without a copy of the server's rules: every policy type
with the JSON schema of its config (``/schema/policies``, the web UI's policy editor) and the
caller's permissions (``/me/permissions``, which actions the web UI offers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from portway.config.management.catalog import PolicySchemas
from portway.manager.auth import ROLE_PERMISSIONS, Permission
from portway.manager.deps import Reader
from portway.policies.registry import policy_json_schemas

router = APIRouter()


@router.get("/schema/policies", tags=["policies"], response_model=PolicySchemas)
async def policy_schemas(_: Reader) -> dict[str, dict[str, Any]]:
    """Per policy type: its summary, the lists (request, response, error) it may sit in, its
    error codes and the JSON schema of its ``config``."""
    return policy_json_schemas()


class CallerPermissions(BaseModel):
    username: str
    role: str
    permissions: list[Permission]


@router.get("/me/permissions", tags=["auth"])
async def my_permissions(who: Reader) -> CallerPermissions:
    """The caller's role and what it allows (``read``, ``write_apis``, ``deploy``, …)."""
    granted = ROLE_PERMISSIONS[who.role]
    return CallerPermissions(
        username=who.username,
        role=who.role.value,
        permissions=[p for p in Permission if p in granted],
    )
