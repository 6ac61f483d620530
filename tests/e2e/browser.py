"""A real Chromium (Debian's ``chromium``) driven by Playwright for Python, for the web UI tests:
screenshots of every page it visits, axe-core on each, and a record of every request's host."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.servers import missing_capability

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_ENV = "PORTWAY_UI_SCREENSHOTS"
"""When set, a directory the screenshots are also copied to (``docs/ui`` when refreshing docs)."""


@dataclass
class Page:
    """One signed-in tab: ``go`` opens a route and waits for its heading."""

    page: Any
    base_url: str
    shots: Path
    axe: Any
    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hosts: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def go(self, route: str, heading: str) -> None:
        self.page.goto(f"{self.base_url}/#{route}")
        self.wait_heading(heading)

    def wait_heading(self, heading: str) -> None:
        self.page.get_by_role("heading", level=1, name=heading).wait_for()
        self.page.wait_for_load_state("networkidle")

    def check(self, name: str) -> None:
        """Screenshot the page as ``name``.png and run axe-core on it."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        copy_to = os.environ.get(SCREENSHOTS_ENV)
        if copy_to:
            Path(copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(copy_to) / path.name)
        result = self.axe.run(self.page)
        serious = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if serious:
            self.violations[name] = serious


@contextmanager
def chromium(base_url: str, shots: Path) -> Iterator[Any]:
    """A browser; ``open_page()`` on the yielded object gives a fresh context's ``Page``."""
    if not CHROMIUM.exists():
        missing_capability("Debian's chromium is not installed (scripts/apt-packages.txt)")
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))

        class Browser:
            @staticmethod
            def open_page() -> Page:
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                # a cap on each wait, not a speed requirement: on a loaded machine (two xdist
                # workers on two cores) Swagger UI took more than 15 s to draw
                page.set_default_timeout(60_000)
                tab = Page(page, base_url, shots, Axe())
                page.on("request", lambda r: tab.hosts.add(urlsplit(r.url).netloc))
                page.on("pageerror", lambda e: tab.errors.append(str(e)))
                page.on(  # CSP refusals and script errors (not the 401 of a signed-out probe)
                    "console",
                    lambda m: tab.errors.append(m.text) if "Refused" in m.text else None,
                )
                return tab

        try:
            yield Browser
        finally:
            browser.close()
