"""The web manager UI: a static app of plain ES modules served under ``/``, a client of
``/api/v1`` only, and the interactive API docs at ``/api/v1/docs`` with locally served assets.

Assets live under a content-hashed prefix (``/ui/<version>/…``) and are cached for a year; the
pages that name them are revalidated on every load. Every answer carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline script, no eval.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

ASSETS = Path(__file__).with_name("web_ui_assets")
# Swagger UI's dist from the pinned PyPI package swagger-ui-bundle-v2 (vendor/swagger-ui-<version>)
[SWAGGER] = [Path(str(p)) for p in (files("swagger_ui_bundle") / "vendor").iterdir() if p.is_dir()]
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


@cache
def asset_version() -> str:
    """A digest of every asset (the app's and Swagger UI's): changes whenever one does."""
    digest = hashlib.sha256()
    for path in [*_files(ASSETS), *(SWAGGER / name for name in SWAGGER_FILES)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _page(title: str, styles: list[str], scripts: list[str], body: str) -> HTMLResponse:
    """An HTML page loading ``styles`` and ``scripts`` (``*.js`` files load as modules when
    their name starts with ``module:``)."""
    head = [f'<link rel="stylesheet" href="{href}">' for href in styles]
    for src in scripts:
        kind = ' type="module"' if src.startswith("module:") else ""
        head.append(f'<script{kind} src="{src.removeprefix("module:")}"></script>')
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{title}</title>\n<link rel="icon" href="data:,">\n' + "\n".join(head) + "\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def _file(path: Path) -> Response:
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media = "text/javascript"
    return Response(
        path.read_bytes(),
        media_type=media,
        headers={**SECURITY_HEADERS, "Cache-Control": IMMUTABLE},
    )


def _inside(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        raise HTTPException(404, "no such asset")
    return target


def install(app: FastAPI) -> None:
    """Mount the UI at ``/``, its assets at ``/ui/<version>/``, the API docs at ``/api/v1/docs``."""

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        base = f"/ui/{asset_version()}"
        return _page(
            "Portway",
            [f"{base}/vendor/uPlot.min.css", f"{base}/app.css"],
            [f"module:{base}/app.js"],
            '<div id="app"><p class="boot">Loading Portway…</p></div>\n'
            "<noscript>The Portway manager UI needs JavaScript.</noscript>",
        )

    @app.get("/ui/{version}/{path:path}", include_in_schema=False)
    async def asset(version: str, path: str) -> Response:
        if version != asset_version():
            raise HTTPException(404, "no such asset version")
        return _file(_inside(ASSETS, path))

    @app.get("/api/v1/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        base = f"/api/v1/docs/assets/{asset_version()}"
        return _page(
            "Portway management API",
            [f"{base}/swagger-ui.css"],
            [f"{base}/swagger-ui-bundle.js", f"/ui/{asset_version()}/docs-init.js"],
            '<div id="swagger-ui" data-spec="/api/v1/openapi.json"></div>',
        )

    @app.get("/api/v1/docs/assets/{version}/{name}", include_in_schema=False)
    async def docs_asset(version: str, name: str) -> Response:
        if version != asset_version() or name not in SWAGGER_FILES:
            raise HTTPException(404, "no such asset")
        return _file(SWAGGER / name)
