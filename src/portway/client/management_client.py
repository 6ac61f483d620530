"""A typed client of the management API (``/api/v1``), used by the CLI and scripts.

Answers are parsed into the models of ``portway.config.management``, the ones the manager
declares on its routes, so client and manager share one contract."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from portway.config.declarative import DeclarativeConfig
from portway.config.management.access import Me
from portway.config.management.catalog import ApiProxyView, ApiSummary, ImportedApi
from portway.config.management.consumers import ImportResult
from portway.config.management.declarative import ApplyResult
from portway.config.management.deployments import Deployment, WorkerView

T = TypeVar("T")

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
        accept: str | None = None,
    ) -> Any:
        """The parsed JSON answer (the text when ``accept`` asks for another type)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Accept": accept} if accept else None
        try:
            response = self._http.request(method, path, json=json, params=clean, headers=headers)
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
        if accept is not None and accept != "application/json":
            return response.text
        return response.json() if response.content else None

    def _answer(self, model: type[T] | Any, method: str, path: str, **kwargs: Any) -> T:
        """Call, then parse the answer into ``model`` (a model class or ``list[...]``)."""
        parsed: T = self._check(model, self._call(method, path, **kwargs), f"{method} {path}")
        return parsed

    @staticmethod
    def _check(model: type[T] | Any, body: Any, call: str) -> T:
        try:
            parsed: T = TypeAdapter(model).validate_python(body)
        except ValidationError as exc:
            raise ManagementAPIError(
                0,
                "unexpected_answer",
                f"the manager's answer to {call} does not match this client: "
                f"{exc.errors()[0].get('msg', 'invalid')}",
            ) from None
        return parsed

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
        return self._check(list[ApiSummary], list(self._pages("/apis", params, limit)), "GET /apis")

    def get_api(self, project: str, name: str) -> ApiProxyView:
        return self._answer(ApiProxyView, "GET", f"/projects/{project}/apis/{name}")

    def create_api(self, project: str, api: Mapping[str, Any]) -> ApiProxyView:
        return self._answer(ApiProxyView, "POST", f"/projects/{project}/apis", json=api)

    def import_api(
        self, project: str, request: Mapping[str, Any], *, dry_run: bool = False
    ) -> ImportedApi:
        return self._answer(
            ImportedApi,
            "POST",
            f"/projects/{project}/apis/import",
            json=request,
            params={"dry_run": "true" if dry_run else None},
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
        return self._answer(
            Deployment, "POST", f"/environments/{environment}/deployments", json=body
        )

    def deploy_batch(
        self, environment: str, items: Sequence[Mapping[str, Any]], note: str = ""
    ) -> Deployment:
        body = {"items": list(items), "note": note}
        return self._answer(
            Deployment, "POST", f"/environments/{environment}/deployments/batch", json=body
        )

    def history(self, environment: str, limit: int | None = 20) -> list[Deployment]:
        """The newest deployment records of an environment (``limit=None``: all of them)."""
        path = f"/environments/{environment}/deployments"
        return self._check(list[Deployment], list(self._pages(path, {}, limit)), f"GET {path}")

    def workers(self, environment: str | None = None) -> list[WorkerView]:
        return self._answer(
            list[WorkerView], "GET", "/workers", params={"environment": environment}
        )

    # declarative --------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The declarative file as the manager wrote it (defaults left out), checked against
        ``DeclarativeConfig``."""
        document: dict[str, Any] = self._answer(dict[str, Any], "GET", "/declarative/export")
        self._check(DeclarativeConfig, document, "GET /declarative/export")
        return document

    def apply(
        self, document: Mapping[str, Any], *, dry_run: bool = False, prune: bool = False
    ) -> ApplyResult:
        params = {"dry_run": str(dry_run).lower(), "prune": str(prune).lower()}
        return self._answer(ApplyResult, "POST", "/declarative/apply", json=document, params=params)

    # consumers ----------------------------------------------------------------------------
    def import_consumers(
        self, fmt: str, document: str, *, dry_run: bool = False, partial: bool = False
    ) -> ImportResult:
        return self._answer(
            ImportResult,
            "POST",
            "/consumers/import",
            json={"format": fmt, "document": document},
            params={"dry_run": str(dry_run).lower(), "partial": str(partial).lower()},
        )

    def import_consumers_csv(
        self, fmt: str, document: str, *, dry_run: bool = False, partial: bool = False
    ) -> str:
        """The same import, answered as the CSV result file (generated secrets in it, once)."""
        text: str = self._call(
            "POST",
            "/consumers/import",
            json={"format": fmt, "document": document},
            params={"dry_run": str(dry_run).lower(), "partial": str(partial).lower()},
            accept="text/csv",
        )
        return text

    def schema(self) -> dict[str, Any]:
        return self._answer(dict[str, Any], "GET", "/schema/declarative")

    def me(self) -> Me:
        return self._answer(Me, "GET", "/me")
