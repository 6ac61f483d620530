"""Whole-revision validation: everything a worker will compile is checked here first."""

from __future__ import annotations

from collections.abc import Sequence

from portway.config.models import ApiProxy, PolicyLists
from portway.errors import ConfigError, DeploymentError


def _validate_policies(lists: PolicyLists, where: str) -> None:
    try:
        from portway.policies.registry import validate_policy_spec
    except ImportError:  # pragma: no cover - the registry ships with the policies package
        return
    for side in ("request", "response", "error"):
        for index, spec in enumerate(getattr(lists, side)):
            validate_policy_spec(spec, f"{where}.{side}[{index}]")


def validate_api(api: ApiProxy) -> None:
    """Refuse an API proxy whose policies do not validate; the error names the field path."""
    _validate_policies(api.policies, "body.policies")
    for index, endpoint in enumerate(api.endpoints):
        _validate_policies(endpoint.policies, f"body.endpoints[{index}].policies")


def validate_environment_apis(apis: Sequence[ApiProxy]) -> None:
    """Routes of one environment must not collide: same base path on overlapping hosts."""
    claimed: dict[tuple[str, str], ApiProxy] = {}
    for api in apis:
        try:
            validate_api(api)
        except ConfigError as exc:
            raise DeploymentError(f"{api.project}/{api.name}: {exc}") from exc
        for host in api.hosts or ["*"]:
            other = claimed.get((host, api.base_path))
            if other is not None:
                raise DeploymentError(
                    f"{api.project}/{api.name} and {other.project}/{other.name} both claim "
                    f"base path {api.base_path} on host {host}"
                )
            claimed[(host, api.base_path)] = api
