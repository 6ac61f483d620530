"""Whole-revision validation: everything a worker will compile is checked here first.

Policy configs are validated by each policy's own model through
``portway.policies.registry.validate_policy_spec``; the error names the field path, e.g.
``body.endpoints[0].policies.request[1].config.limit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from portway.config.models import ApiProxy, PolicyLists, PolicySpec
from portway.errors import ConfigError, DeploymentError
from portway.policies.registry import validate_policy_spec


def validate_policy(
    spec: PolicySpec,
    where: str,
    *,
    phase: str | None = None,
    global_policies: Mapping[str, PolicySpec] | None = None,
) -> None:
    """Validate one policy entry with its own model; ``ConfigError`` names the field."""
    if spec.global_ref is not None and global_policies is not None:
        target = global_policies.get(spec.global_ref)
        if target is None:
            raise ConfigError(
                f"global policy {spec.global_ref!r} does not exist", f"{where}.global_ref"
            )
        if target.type != spec.type:
            raise ConfigError(
                f"global policy {spec.global_ref!r} is of type {target.type!r}, not {spec.type!r}",
                f"{where}.type",
            )
    validate_policy_spec(spec, where, phase=phase, global_policies=global_policies)


def _validate_policies(
    lists: PolicyLists, where: str, global_policies: Mapping[str, PolicySpec] | None
) -> None:
    for side in ("request", "response", "error"):
        for index, spec in enumerate(getattr(lists, side)):
            validate_policy(
                spec, f"{where}.{side}[{index}]", phase=side, global_policies=global_policies
            )


def validate_api(api: ApiProxy, global_policies: Mapping[str, PolicySpec] | None = None) -> None:
    """Refuse an API proxy whose policies do not validate; the error names the field path."""
    _validate_policies(api.policies, "body.policies", global_policies)
    for index, endpoint in enumerate(api.endpoints):
        _validate_policies(endpoint.policies, f"body.endpoints[{index}].policies", global_policies)


def validate_environment_apis(
    apis: Sequence[ApiProxy], global_policies: Mapping[str, PolicySpec] | None = None
) -> None:
    """Routes of one environment must not collide: same base path on overlapping hosts."""
    claimed: dict[tuple[str, str], ApiProxy] = {}
    for api in apis:
        try:
            validate_api(api, global_policies)
        except ConfigError as exc:
            raise DeploymentError(f"{api.project}/{api.name}: {exc}") from exc
        for base_path, hosts in api.client_routes():
            for host in hosts or ["*"]:
                other = claimed.get((host, base_path))
                if other is not None:
                    raise DeploymentError(
                        f"{api.project}/{api.name} and {other.project}/{other.name} both claim "
                        f"base path {base_path} on host {host}"
                    )
                claimed[(host, base_path)] = api


def specs(docs: Sequence[Mapping[str, Any]]) -> dict[str, PolicySpec]:
    """Global policy documents as specs by name."""
    return {str(d["name"]): PolicySpec.model_validate(d) for d in docs}
