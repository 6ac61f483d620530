"""The web UI's server side: the page, versioned assets with cache headers and a strict CSP,
locally served API docs, the vendored files' checksums, and the two API routes the UI needs."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from portway.manager import web_ui
from portway.manager.auth import ROLE_PERMISSIONS, Role
from portway.policies.registry import POLICY_TYPES

pytestmark = pytest.mark.usefixtures("manager")


class References(HTMLParser):
    """Every URL a page loads: script src, link href, img src, and inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("src", "href"):
            if values.get(key) is not None and tag in ("script", "link", "img", "iframe"):
                self.urls.append(str(values[key]))
        self._in_script_without_src = tag == "script" and "src" not in values

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def assert_strict_csp(headers: dict[str, str] | object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp


@pytest.mark.parametrize("path", ["/", "/api/v1/docs"])
def test_pages_load_only_local_versioned_assets_under_a_strict_csp(
    manager: TestClient, path: str
) -> None:
    page = manager.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert_strict_csp(page.headers)
    found = references(page.text)
    assert found.inline_scripts == 0
    assert found.urls
    version = web_ui.asset_version()
    for url in found.urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/"), f"{path} references another host: {url}"
        assert not url.startswith("//"), url
        assert f"/{version}/" in url, f"{url} is not versioned"
        asset = manager.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert_strict_csp(asset.headers)
    assert "cdn.jsdelivr.net" not in page.text


def test_the_docs_page_names_no_external_host(manager: TestClient) -> None:
    page = manager.get("/api/v1/docs").text
    assert not re.search(r"https?://", page), page


def test_modules_are_served_as_javascript_and_every_import_resolves(
    manager: TestClient,
) -> None:
    base = f"/ui/{web_ui.asset_version()}"
    seen: set[str] = set()
    queue = ["app.js"]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        response = manager.get(f"{base}/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript")
        for target in re.findall(r'^import .* from "([^"]+)";$', response.text, re.M):
            assert target.startswith("."), f"{name} imports {target} from outside the assets"
            queue.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    assert {"app.js", "lib.js", "form.js", "vendor/uPlot.esm.js", "pages/apis.js"} <= seen


@pytest.mark.parametrize(
    "path",
    [
        "/ui/0000000000000000/app.js",  # another version
        "/ui/{v}/../web_ui.py",
        "/ui/{v}/%2e%2e/web_ui.py",
        "/ui/{v}/..%2fweb_ui.py",
        "/ui/{v}/nothing.js",
        "/ui/{v}/",
        "/api/v1/docs/assets/{v}/swagger-ui.js.map",
        "/api/v1/docs/assets/{v}/..%2f..%2f__init__.py",
    ],
)
def test_asset_paths_outside_the_assets_are_404(manager: TestClient, path: str) -> None:
    response = manager.get(path.format(v=web_ui.asset_version()))
    assert response.status_code == 404
    assert "def " not in response.text


def test_the_asset_version_follows_the_contents() -> None:
    digest = hashlib.sha256()
    for path in sorted(p for p in web_ui.ASSETS.rglob("*") if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for name in web_ui.SWAGGER_FILES:
        digest.update(name.encode())
        digest.update((web_ui.SWAGGER / name).read_bytes())
    assert web_ui.asset_version() == digest.hexdigest()[:16]


def test_every_vendored_file_matches_its_recorded_version_and_checksum() -> None:
    vendor = web_ui.ASSETS / "vendor"
    recorded = json.loads((vendor / "VENDORED.json").read_text())
    files = {p.name for p in vendor.iterdir()} - {"VENDORED.json"}
    assert {entry["file"] for entry in recorded} == files
    for entry in recorded:
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"]), entry
        actual = hashlib.sha256((vendor / entry["file"]).read_bytes()).hexdigest()
        assert actual == entry["sha256"], f"{entry['file']} changed without a new record"


def test_policy_schemas_list_every_type_with_its_config_schema(
    admin: TestClient,
) -> None:
    response = admin.get("/api/v1/schema/policies")
    assert response.status_code == 200
    schemas = response.json()
    assert set(schemas) == set(POLICY_TYPES)
    throttling = schemas["throttling"]
    assert throttling["phases"] == ["request"]
    assert throttling["config"]["properties"]["limit"]["minimum"] == 1
    assert "limit" in throttling["config"]["required"]
    assert throttling["errors"]["rate_limited"]["status"] == 429


def test_policy_schemas_and_permissions_need_a_caller(manager: TestClient) -> None:
    for path in ("/api/v1/schema/policies", "/api/v1/me/permissions"):
        response = manager.get(path)
        assert response.status_code == 401
        assert response.json()["correlation_id"]


def test_each_role_reads_exactly_its_permissions(
    as_role: Callable[[str], dict[str, str]], admin: TestClient
) -> None:
    for role in Role:
        response = admin.get("/api/v1/me/permissions", headers=as_role(role.value))
        assert response.status_code == 200
        body = response.json()
        assert body["role"] == role.value
        assert body["username"] == f"{role.value.replace('_', '-')}-user"
        assert set(body["permissions"]) == {p.value for p in ROLE_PERMISSIONS[role]}


def _properties(document: dict[str, object], model: str) -> set[str]:
    schemas = document["components"]["schemas"]  # type: ignore[index]
    return set(schemas[model]["properties"])


def test_the_matrix_and_workers_pages_read_fields_the_api_declares(manager: TestClient) -> None:
    """A renamed or dropped field of the matrix or workers answers shows here, not as a blank
    cell; and the matrix page draws its diagram as text (no style injected: the CSP)."""
    document = manager.get("/api/v1/openapi.json").json()
    base = f"/ui/{web_ui.asset_version()}/pages"
    matrix = manager.get(f"{base}/matrix.js").text
    read = set(re.findall(r"\bmatrix\.(\w+)", matrix))
    assert {"rules", "checklist", "diagram", "flows"} <= read
    assert read <= _properties(document, "NetworkMatrix")
    verdict = set(re.findall(r"\br\.(\w+)", matrix))
    assert verdict == _properties(document, "MatrixRuleVerdict")
    item = set(re.findall(r"\bi\.(\w+)", matrix))
    assert item == _properties(document, "MatrixChecklistItem")
    assert set(re.findall(r"\bv\.(\w+)", matrix)) <= _properties(document, "MatrixViolation")
    assert "style" not in matrix
    assert re.search(r'h\("pre", \{[^}]*\}, matrix\.diagram\)', matrix)
    workers = manager.get(f"{base}/deploy.js").text
    workers = workers[workers.index("export async function workers") :]
    assert set(re.findall(r"\bw\.(\w+)", workers)) <= _properties(document, "WorkerView")
    [names] = re.findall(r"\.\.\.\[([^\]]+)\]\.map", workers)
    counted = set(re.findall(r'"(\w+)"', names)) | set(re.findall(r"\bc\.(\w+)", workers))
    assert counted - {"worker"} == _properties(document, "WorkerPolicyCounters")
