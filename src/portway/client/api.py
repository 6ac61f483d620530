"""A typed client of the management API (``/api/v1``), used by the CLI and scripts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NotRequired, TypedDict, cast

import httpx

_PAGE = 1000  # items asked per page: the most the manager answers


class ManagementAPIError(Exception):
    """The management API refused a call (or could not be reached: ``status`` 0)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        lines = [f"{self.message} ({self.status} {self.code})" if self.status else self.message]
        for detail in self.details:
            lines.append(f"  {detail.get('field') or '-'}: {detail.get('message')}")
        if self.correlation_id:
            lines.append(f"  correlation id: {self.correlation_id}")
        return "\n".join(lines)


class ApiDeployment(TypedDict):
    environment: str
    api_revision: int
    redeploy_required: bool


class ApiSummary(TypedDict):
    project: str
    name: str
    description: str
    base_path: str
    backends: int
    endpoints: int
    maintenance: bool
    version: int
    deployments: list[ApiDeployment]
    redeploy_required: bool


class WorkerResult(TypedDict):
    worker: str
    address: str
    success: bool
    served_revision: NotRequired[int | None]
    error: NotRequired[str | None]
    at: NotRequired[str]
    seconds: NotRequired[float]


class Deployment(TypedDict):
    id: str
    environment: str
    action: str
    project: str | None
    api: str | None
    api_revision: int | None
    env_revision: int
    note: str
    actor: str
    at: str
    items: list[dict[str, Any]]
    results: list[WorkerResult]


class WorkerRow(TypedDict):
    id: str
    environment: str | None
    address: str | None
    state: str
    served_revision: int | None
    last_served_revision: int | None
    desired_revision: int | None
    in_sync: bool
    converge_seconds: float | None
    last_report: str | None
    healthy: bool
    probe: dict[str, Any] | None


class PlanChange(TypedDict):
    kind: str
    name: str
    action: str
    diff: list[dict[str, Any]]


class ApplyResult(TypedDict):
    dry_run: bool
    applied: bool
    summary: dict[str, int]
    changes: list[PlanChange]
    published: list[dict[str, Any]]


class ManagerClient:
    """Calls the management API with a personal access token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1",
            headers=headers,
            timeout=timeout,
            trust_env=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, json=json, params=clean)
        except httpx.HTTPError as exc:
            raise ManagementAPIError(
                0, "unreachable", f"cannot reach the manager at {self.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            if not isinstance(problem, dict):
                problem = {}
            raise ManagementAPIError(
                response.status_code,
                str(problem.get("error", "http_error")),
                str(problem.get("message", response.text[:300] or response.reason_phrase)),
                problem.get("details") or (),
                problem.get("correlation_id"),
            )
        return response.json() if response.content else None

    # API proxies --------------------------------------------------------------------------
    def _pages(
        self, path: str, params: Mapping[str, Any], limit: int | None
    ) -> Iterator[dict[str, Any]]:
        """The items of a paged list, following ``next`` until the list (or ``limit``) ends."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            size = _PAGE if left is None else min(left, _PAGE)
            page = self._call("GET", path, params={**params, "limit": size, "cursor": cursor})
            items: list[dict[str, Any]] = page["items"]
            yield from items
            if left is not None:
                left -= len(items)
            cursor = page["next"]
            if cursor is None:
                return

    def list_apis(
        self,
        *,
        project: str | None = None,
        name_contains: str | None = None,
        environment: str | None = None,
        redeploy_required: bool | None = None,
        limit: int | None = None,
    ) -> list[ApiSummary]:
        """API summaries, every page (or the first ``limit``)."""
        params = {
            "project": project,
            "name_contains": name_contains,
            "environment": environment,
            "redeploy_required": None if redeploy_required is None else str(redeploy_required),
        }
        return cast(list[ApiSummary], list(self._pages("/apis", params, limit)))

    def get_api(self, project: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", f"/projects/{project}/apis/{name}"))

    def create_api(self, project: str, api: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("POST", f"/projects/{project}/apis", json=api))

    def import_api(
        self, project: str, request: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._call(
                "POST",
                f"/projects/{project}/apis/import",
                json=request,
                params={"dry_run": "true" if dry_run else None},
            ),
        )

    # deployments --------------------------------------------------------------------------
    def deploy(
        self,
        environment: str,
        project: str,
        api: str,
        *,
        action: str = "deploy",
        api_revision: int | None = None,
        note: str = "",
    ) -> Deployment:
        body = {
            "project": project,
            "api": api,
            "action": action,
            "api_revision": api_revision,
            "note": note,
        }
        return cast(
            Deployment,
            self._call("POST", f"/environments/{environment}/deployments", json=body),
        )

    def deploy_batch(
        self, environment: str, items: Sequence[Mapping[str, Any]], note: str = ""
    ) -> Deployment:
        body = {"items": list(items), "note": note}
        return cast(
            Deployment,
            self._call("POST", f"/environments/{environment}/deployments/batch", json=body),
        )

    def history(self, environment: str, limit: int | None = 20) -> list[Deployment]:
        """The newest deployment records of an environment (``limit=None``: all of them)."""
        return cast(
            list[Deployment],
            list(self._pages(f"/environments/{environment}/deployments", {}, limit)),
        )

    def workers(self, environment: str | None = None) -> list[WorkerRow]:
        return cast(
            list[WorkerRow], self._call("GET", "/workers", params={"environment": environment})
        )

    # declarative --------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/declarative/export"))

    def apply(
        self, document: Mapping[str, Any], *, dry_run: bool = False, prune: bool = False
    ) -> ApplyResult:
        params = {"dry_run": str(dry_run).lower(), "prune": str(prune).lower()}
        return cast(
            ApplyResult, self._call("POST", "/declarative/apply", json=document, params=params)
        )

    def schema(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/schema/declarative"))

    def me(self) -> dict[str, str]:
        return cast(dict[str, str], self._call("GET", "/me"))
