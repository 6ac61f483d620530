"""Edits of one API proxy's endpoints and policy lists, on a copy of its stored document.

Endpoints are addressed by their index in the proxy (``GET …/endpoints`` lists them with it);
send ``If-Match`` with the proxy's version when indexes matter. Policies are addressed by name,
which is unique within a scope (the proxy, or one endpoint).
"""

from __future__ import annotations

from typing import Any, Literal

from portway.config.models import Endpoint, PolicySpec
from portway.errors import ConfigError, Conflict, NotFound

Phase = Literal["request", "response", "error"]
PHASES: tuple[Phase, ...] = ("request", "response", "error")


def _endpoints(data: dict[str, Any]) -> list[dict[str, Any]]:
    endpoints: list[dict[str, Any]] = data.setdefault("endpoints", [])
    return endpoints


def endpoint_at(data: dict[str, Any], index: int) -> dict[str, Any]:
    endpoints = _endpoints(data)
    if not 0 <= index < len(endpoints):
        raise NotFound("endpoints", f"{data.get('project')}/{data.get('name')}#{index}")
    return endpoints[index]


def _same_route(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["path"] == b["path"] and sorted(a["methods"]) == sorted(b["methods"]))


def add_endpoint(data: dict[str, Any], endpoint: Endpoint, position: int | None) -> dict[str, Any]:
    new = endpoint.model_dump(mode="json")
    endpoints = _endpoints(data)
    if any(_same_route(e, new) for e in endpoints):
        raise Conflict(f"endpoint {new['path']} {new['methods'] or 'any method'} already exists")
    endpoints.insert(len(endpoints) if position is None else position, new)
    return data


def replace_endpoint(data: dict[str, Any], index: int, endpoint: Endpoint) -> dict[str, Any]:
    endpoint_at(data, index)
    new = endpoint.model_dump(mode="json")
    endpoints = _endpoints(data)
    if any(_same_route(e, new) for i, e in enumerate(endpoints) if i != index):
        raise Conflict(f"endpoint {new['path']} {new['methods'] or 'any method'} already exists")
    endpoints[index] = new
    return data


def remove_endpoint(data: dict[str, Any], index: int) -> dict[str, Any]:
    endpoint_at(data, index)
    del _endpoints(data)[index]
    return data


def policy_lists(data: dict[str, Any], endpoint: int | None) -> dict[str, Any]:
    owner = data if endpoint is None else endpoint_at(data, endpoint)
    lists: dict[str, Any] = owner.setdefault("policies", {})
    for phase in PHASES:
        lists.setdefault(phase, [])
    return lists


def _scope(data: dict[str, Any], endpoint: int | None) -> str:
    where = f"{data.get('project')}/{data.get('name')}"
    return where if endpoint is None else f"{where}#{endpoint}"


def _index(entries: list[dict[str, Any]], name: str) -> int | None:
    return next((i for i, e in enumerate(entries) if e["name"] == name), None)


def add_policy(
    data: dict[str, Any], endpoint: int | None, phase: Phase, spec: PolicySpec, position: int | None
) -> dict[str, Any]:
    lists = policy_lists(data, endpoint)
    if any(_index(lists[p], spec.name) is not None for p in PHASES):
        raise Conflict(f"a policy named {spec.name!r} already exists in {_scope(data, endpoint)}")
    entries: list[dict[str, Any]] = lists[phase]
    entries.insert(len(entries) if position is None else position, spec.model_dump(mode="json"))
    return data


def get_policy(
    data: dict[str, Any], endpoint: int | None, phase: Phase, name: str
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = policy_lists(data, endpoint)[phase]
    index = _index(entries, name)
    if index is None:
        raise NotFound("policies", f"{_scope(data, endpoint)}/{phase}/{name}")
    return entries[index]


def replace_policy(
    data: dict[str, Any], endpoint: int | None, phase: Phase, name: str, spec: PolicySpec
) -> dict[str, Any]:
    lists = policy_lists(data, endpoint)
    entries: list[dict[str, Any]] = lists[phase]
    index = _index(entries, name)
    if index is None:
        raise NotFound("policies", f"{_scope(data, endpoint)}/{phase}/{name}")
    if spec.name != name and any(_index(lists[p], spec.name) is not None for p in PHASES):
        raise Conflict(f"a policy named {spec.name!r} already exists in {_scope(data, endpoint)}")
    entries[index] = spec.model_dump(mode="json")
    return data


def remove_policy(
    data: dict[str, Any], endpoint: int | None, phase: Phase, name: str
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = policy_lists(data, endpoint)[phase]
    index = _index(entries, name)
    if index is None:
        raise NotFound("policies", f"{_scope(data, endpoint)}/{phase}/{name}")
    del entries[index]
    return data


def reorder_policies(
    data: dict[str, Any], endpoint: int | None, phase: Phase, names: list[str]
) -> dict[str, Any]:
    lists = policy_lists(data, endpoint)
    entries: list[dict[str, Any]] = lists[phase]
    current = [e["name"] for e in entries]
    if sorted(current) != sorted(names) or len(set(names)) != len(names):
        raise ConfigError(
            f"must name each policy of the {phase} list exactly once: {', '.join(current)}",
            "body.names",
        )
    by_name = {e["name"]: e for e in entries}
    lists[phase] = [by_name[n] for n in names]
    return data
