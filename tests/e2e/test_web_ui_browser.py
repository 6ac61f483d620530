"""The web UI in a real Chromium against a real manager, worker and backend: an operator signs in,
builds an API with a key and a throttling policy, deploys it, calls it through the worker, sees
the traffic, rotates the key, rolls back and finds it all in the audit log; a viewer sees no edit
action and no secret. Every page is screenshotted and checked with axe-core."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.browser import Page, chromium
from tests.e2e.conftest import Platform
from tests.support.processes import wait_until

VIEWER_PASSWORD = "viewer password 1234"
BACKEND_LABEL = "Backend URL (optional, else the document's servers)"
PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "Pet store", "version": "1"},
    "paths": {"/pets": {"get": {"responses": {"200": {"description": "the pets"}}}}},
}


QUIET_PETSTORE = '{"kind": "traffic_zero", "api": "petstore"}'
OPS_MAIL = '{"kind": "email", "to": ["ops@example.com"]}'


def sign_in(tab: Page, username: str, password: str) -> None:
    tab.page.goto(tab.base_url + "/")
    tab.wait_heading("Sign in")
    tab.page.get_by_label("Username", exact=True).fill(username)
    tab.page.get_by_label("Password", exact=True).fill(password)
    tab.page.keyboard.press("Enter")
    tab.wait_heading("Dashboard")


def secret_shown(tab: Page) -> str:
    code = tab.page.locator("code.secret")
    code.wait_for()
    return str(code.inner_text())


def send(port: int, key: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{port}/shop/echo", headers={"X-Api-Key": key}, trust_env=False
    )


def call(port: int, key: str) -> int:
    return send(port, key).status_code


def latency_over_time(page: Any) -> None:
    """The p95 tile shows a latency and the latency chart draws p50, p95 and p99."""
    p95 = page.locator(".stat", has_text="Latency p95").locator(".stat-value")
    assert p95.inner_text().endswith(" ms"), p95.inner_text()
    chart = page.locator("figure.chart", has_text="Latency over time")
    chart.get_by_role("img", name="Latency over time chart").wait_for()
    labels = chart.locator(".u-legend .u-label").all_inner_texts()
    assert {"p50", "p95", "p99"} <= set(labels), labels


@pytest.mark.slow
@pytest.mark.timeout(600)  # one long scenario through every page in a real browser
def test_an_operator_runs_an_api_from_the_browser(platform: Platform, tmp_path: Path) -> None:
    _, worker_port = platform.start_worker("w1")
    admin = json.loads((platform.root / "bootstrap-admin.json").read_text())
    with chromium(platform.manager_url, tmp_path / "shots") as browser:
        tab = browser.open_page()
        page = tab.page

        # sign in: a wrong password is refused on the form, the right one opens the dashboard
        page.goto(platform.manager_url + "/")
        tab.wait_heading("Sign in")
        tab.check("sign-in")
        page.get_by_label("Username", exact=True).fill(admin["username"])
        page.get_by_label("Password", exact=True).fill("not the password at all")
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_role("alert").filter(has_text="invalid username or password").wait_for()
        sign_in(tab, admin["username"], admin["password"])

        # create an API through the schema-generated form; the 422 lands on its field
        tab.go("/apis/new", "New API proxy")
        page.get_by_label("Name", exact=True).fill("shop")
        page.get_by_label("Base Path", exact=True).fill("shop")
        page.get_by_role("button", name="Add backend", exact=True).click()
        page.get_by_role("group", name="Backends").get_by_label("Url", exact=True).fill(
            platform.backend_url
        )
        tab.check("api-create")
        page.get_by_role("button", name="Create API proxy", exact=True).click()
        error = page.locator(".field-error")
        error.wait_for()
        assert "base_path must start with '/'" in error.inner_text()
        assert page.get_by_label("Base Path", exact=True).get_attribute("aria-invalid") == "true"
        tab.check("api-create-error")
        page.get_by_label("Base Path", exact=True).fill("/shop")
        page.get_by_role("button", name="Create API proxy", exact=True).click()
        tab.wait_heading("shop in default")
        tab.check("api-detail")

        # policies: an API key check and a throttling limit, config through its schema
        page.get_by_role("link", name="Edit policies", exact=True).click()
        tab.wait_heading("Policies of shop")
        for policy_type, name, config in (
            ("throttling", "limit", {"Limit": "3"}),
            ("api_key", "key", {}),
        ):
            page.get_by_role("button", name="Add request policy", exact=True).click()
            page.get_by_label("Policy type", exact=True).select_option(policy_type)
            page.get_by_label("Name", exact=True).fill(name)
            for label, value in config.items():
                page.get_by_label(label, exact=True).fill(value)
            page.get_by_role("button", name="Add policy", exact=True).click()
            page.locator(f'[data-policy="request/{name}"]').wait_for()
        # the key check must run first: reorder with the keyboard
        page.get_by_role("button", name="Move key up", exact=True).focus()
        page.keyboard.press("Enter")
        page.locator('.policy-list li:first-child[data-policy="request/key"]').wait_for()
        tab.check("policies")
        order = platform.call("GET", "/projects/default/apis/shop/policies")["request"]
        assert [p["name"] for p in order] == ["key", "limit"]
        # a config the policy's schema refuses is shown on that field
        page.get_by_role("button", name="Edit limit", exact=True).click()
        page.get_by_label("Limit", exact=True).fill("0")
        page.get_by_role("button", name="Save policy", exact=True).click()
        page.locator(".field-error").wait_for()
        assert page.get_by_label("Limit", exact=True).get_attribute("aria-invalid") == "true"
        tab.check("policy-edit-error")
        page.get_by_role("button", name="Cancel", exact=True).click()

        # a consumer with a key (shown once) and a grant for the API in dev
        tab.go("/consumers", "Consumers")
        page.get_by_label("Name", exact=True).fill("acme")
        page.get_by_role("button", name="Create consumer", exact=True).click()
        tab.wait_heading("acme")
        page.get_by_role("button", name="New API key", exact=True).click()
        key = secret_shown(tab)
        assert key.startswith("pwk_")
        page.get_by_label("API proxy", exact=True).select_option("default/shop")
        page.get_by_label("Environments", exact=True).fill("dev")
        page.get_by_role("button", name="Save grant", exact=True).click()
        page.get_by_role("link", name="default/shop", exact=True).wait_for()
        tab.check("consumer")

        # deploy with a note, then call the API through the worker
        tab.go("/environments/dev", "Environment dev")
        page.get_by_label("API proxy", exact=True).select_option("default/shop")
        page.get_by_role("button", name="Deploy", exact=True).click()
        page.get_by_label("Note", exact=True).fill("first release")
        page.get_by_role("button", name="Confirm", exact=True).click()
        page.get_by_role("cell", name="first release", exact=True).wait_for()
        tab.check("environment")
        statuses = [call(worker_port, key) for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        refused = send(worker_port, "pwk_wrong")
        assert refused.status_code == 401
        correlation = refused.headers["X-Correlation-ID"]

        # the traffic reaches the dashboard and the analytics explorer
        def dashboard_counts() -> bool:
            tab.go("/?environment=dev&range=15m", "Dashboard")
            page.reload()  # the same address again: load it anew
            tab.wait_heading("Dashboard")
            return bool(page.locator(".stat-value").first.inner_text() == "6")

        wait_until(dashboard_counts, "the dashboard counts the 6 requests", timeout=60)
        page.get_by_role("cell", name="shop", exact=True).wait_for()
        page.get_by_role("cell", name="acme", exact=True).wait_for()
        latency_over_time(page)
        tab.check("dashboard")
        tab.go("/analytics?environment=dev&api=shop&range=1h", "Analytics")
        page.get_by_role("cell", name="429", exact=True).wait_for()
        latency_over_time(page)
        tab.check("analytics")

        # the request log: the refused call found by its correlation id, with the policy that
        # refused it; the refusals by status class; five per page, then "More" for the sixth
        tab.go("/requests", "Request log")
        page.get_by_label("Correlation id", exact=True).fill(correlation)
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_role("link", name=correlation, exact=True).click()
        tab.wait_heading(f"Request {correlation}")
        denied_by = page.locator("dt", has_text="Denied by").locator(
            "xpath=following-sibling::dd[1]"
        )
        assert denied_by.inner_text() == "key"
        assert "401" in page.locator("section", has_text="Response to the client").inner_text()
        tab.check("request-detail")
        tab.go("/requests?environment=dev&status=4xx", "Request log")
        page.get_by_text("3 shown.").wait_for()
        tab.go("/requests?environment=dev&limit=5", "Request log")
        page.get_by_text("5 shown; more are older.").wait_for()
        page.get_by_role("button", name="More", exact=True).click()
        page.get_by_text("6 shown.").wait_for()
        assert page.get_by_role("button", name="More", exact=True).is_hidden()
        tab.check("requests")
        # a status the API refuses: its message, and no More to follow
        tab.go("/requests?status=6xx", "Request log")
        page.get_by_role("alert").filter(has_text="status must be a status code").wait_for()
        assert page.get_by_role("button", name="More", exact=True).is_hidden()

        # rotate the key: a new secret, the old one works during the grace period
        tab.go("/consumers/acme", "acme")
        page.once("dialog", lambda dialog: dialog.accept("600"))
        page.get_by_role("button", name=f"Rotate key {key[:8]}").click()
        rotated = secret_shown(tab)
        assert rotated.startswith("pwk_")
        assert rotated != key
        tab.check("consumer-rotated")

        # change the API, deploy, roll back; the history shows per-worker results
        platform.call(
            "PUT",
            "/projects/default/apis/shop",
            {"name": "shop", "base_path": "/moved", "backends": [{"url": platform.backend_url}]},
        )
        tab.go("/environments/dev", "Environment dev")
        page.get_by_role("button", name="Deploy", exact=True).click()
        page.get_by_label("Note", exact=True).fill("move to /moved")
        page.get_by_role("button", name="Confirm", exact=True).click()
        page.get_by_role("cell", name="move to /moved", exact=True).wait_for()
        page.get_by_label("Roll back to", exact=True).select_option("1")
        page.get_by_role("button", name="Roll back", exact=True).click()
        page.get_by_label("Note", exact=True).fill("back to /shop")
        page.get_by_role("button", name="Confirm", exact=True).click()
        page.get_by_role("cell", name="back to /shop", exact=True).wait_for()
        assert page.locator("ul.results").first.inner_text().startswith("ok w1")
        tab.check("environment-history")
        wait_until(lambda: call(worker_port, rotated) in (200, 429), "rolled back route")
        tab.go("/environments/dev/diff?from=2&to=3", "Compare revisions of dev")
        page.locator("pre.diff .add").first.wait_for()
        tab.check("revision-diff")

        # the audit log has the rollback and the rotation, with no secret in it
        tab.go("/audit", "Audit log")
        page.get_by_text("deployment.rollback").first.wait_for()
        page.get_by_text("credential.rotate").first.wait_for()
        audit_text = page.locator("main").inner_text()
        assert key not in audit_text
        assert rotated not in audit_text
        tab.check("audit")

        # every other page renders under the CSP, keyboard-reachable, axe-clean
        for route, heading, name in (
            ("/apis", "API proxies", "apis"),
            ("/apis/import", "Import from OpenAPI", "api-import"),
            ("/workers", "Workers", "workers"),
            ("/environments", "Environments", "environments"),
            ("/global-policies", "Global policies", "global-policies"),
            ("/users", "Users and roles", "users"),
            ("/account", "Your account", "account"),
        ):
            tab.go(route, heading)
            tab.check(name)
        # the worker registry shows the worker converged on the rollback's revision
        tab.go("/workers", "Workers")
        registry = page.get_by_role("region", name="Workers", exact=True)
        row = registry.get_by_role("row").filter(has_text="w1")
        assert "4 / 4" in row.inner_text()
        assert "healthy" in row.inner_text()
        # its policy counters, as its last report gave them: the limit refused calls
        counters = page.get_by_role("region", name="Policy counters", exact=True)

        names = ("evaluated", "allowed", "denied", "errors", "skipped", "shadow_denied")

        def limit_row_shown() -> bool:
            [worker] = platform.call("GET", "/workers")
            [limit] = [c for c in worker["policy_counters"] if c["policy"] == "limit"]
            expected = ["w1", limit["key"], limit["scope"], "limit"]
            expected += [str(limit[n]) for n in names]
            rows = counters.get_by_role("row").filter(has_text="limit")
            return bool(rows.count()) and rows.first.get_by_role("cell").all_inner_texts() == (
                expected
            )

        wait_until(limit_row_shown, "the workers page shows the limit policy's counters")
        cells = counters.get_by_role("row").filter(has_text="limit").first.get_by_role("cell")
        shown = dict(zip(names, map(int, cells.all_inner_texts()[4:]), strict=True))
        assert shown["denied"] >= 2  # the two 429s
        assert shown["allowed"] >= 3
        tab.check("workers-counters")
        tab.go("/account", "Your account")

        # a personal token from the account page: shown once, then revoked
        page.get_by_label("Name", exact=True).fill("ci")
        page.get_by_label("Your password", exact=True).fill(admin["password"])
        page.get_by_role("button", name="Create token", exact=True).click()
        token = secret_shown(tab)
        assert token.startswith("pwt_")
        with httpx.Client(trust_env=False) as client:
            me = client.get(
                platform.manager_url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
            )
        assert me.json()["username"] == admin["username"]
        page.reload()
        tab.wait_heading("Your account")
        # the page reloads itself once the revoke is stored: wait for that load, or the next
        # navigation races it ("interrupted by another navigation")
        with page.expect_navigation():
            page.get_by_role("button", name="Revoke token ci", exact=True).click()
        page.get_by_text("revoked").wait_for()
        tab.go("/apis/default/shop/edit", "Edit shop")
        tab.check("api-edit")

        # OpenAPI import from an uploaded file: a dry-run preview stores nothing, then import
        spec = tmp_path / "petstore.json"
        spec.write_text(json.dumps(PETSTORE))
        tab.go("/apis/import", "Import from OpenAPI")
        page.get_by_label("API name", exact=True).fill("petstore")
        page.get_by_label("…or upload a file", exact=True).set_input_files(str(spec))
        page.get_by_label(BACKEND_LABEL, exact=True).fill(platform.backend_url)
        page.get_by_role("button", name="Preview (dry run)", exact=True).click()
        page.get_by_role("heading", name="Preview (nothing stored)").wait_for()
        assert "/pets" in page.locator("pre.code").inner_text()
        tab.check("api-import-preview")
        with platform.api() as client:
            assert client.get("/projects/default/apis/petstore").status_code == 404
        page.get_by_role("button", name="Import", exact=True).click()
        tab.wait_heading("petstore in default")
        page.get_by_role("cell", name="/pets").first.wait_for()

        # alerts: a rule and a silence created through their schema forms, the silence deleted;
        # the rule fires (petstore gets no traffic) and shows on the alerts page and the dashboard
        tab.go("/alerts", "Alerts")
        tab.check("alerts-empty")

        def submit(form_title: str, fields: dict[str, str], label: str) -> None:
            form = page.locator("section", has=page.get_by_role("heading", name=form_title))
            for field, text in fields.items():
                form.get_by_label(field, exact=True).fill(text)
            form.get_by_role("button", name=label, exact=True).click()

        # this manager has no mail relay: the e-mail channel is refused on its Target field
        submit(
            "New notification channel", {"Name": "ops", "Target (JSON)": OPS_MAIL}, "Create channel"
        )
        page.locator(".field-error").filter(has_text="e-mail needs a mail relay").wait_for()
        assert page.get_by_label("Target (JSON)").get_attribute("aria-invalid") == "true"
        assert platform.call("GET", "/alerts/channels") == []
        submit(
            "New rule",
            {"Name": "quiet-petstore", "Condition (JSON)": QUIET_PETSTORE},
            "Create rule",
        )
        # the rule may fire at once (no traffic yet): look for it among the rules
        rules = page.get_by_role("region", name="Rules", exact=True)
        rules.get_by_role("cell", name="quiet-petstore", exact=True).wait_for()
        submit(
            "New silence",
            {"Ends At": "2099-01-01T00:00:00Z", "Comment": "upgrade"},
            "Create silence",
        )
        page.get_by_role("cell", name="upgrade", exact=True).wait_for()
        silence = platform.call("GET", "/alerts/silences")[0]
        with page.expect_navigation():  # the page reloads itself after the delete
            page.get_by_role("button", name=f"Delete silence {silence['id']}", exact=True).click()
        wait_until(lambda: platform.call("GET", "/alerts/silences") == [], "silence deleted")

        def firing() -> bool:
            tab.go("/alerts", "Alerts")
            page.reload()
            tab.wait_heading("Alerts")
            active = page.get_by_role("region", name="Active alerts", exact=True)
            return bool(active.get_by_role("cell", name="quiet-petstore", exact=True).count())

        wait_until(firing, "the traffic_zero rule fires", timeout=90)
        tab.check("alerts")
        tab.go("/", "Dashboard")
        active = page.get_by_role("region", name="Active alerts", exact=True)
        active.get_by_role("cell", name="quiet-petstore", exact=True).wait_for()

        # the network matrix of the manager's settings: its port in the workers' flows
        tab.go("/matrix", "Network matrix")
        flow = page.get_by_role("row").filter(has_text="int-worker-manager-config")
        assert str(platform.manager_port) in flow.inner_text()
        # each rule of `portway matrix check` with its verdict, the checklist, the diagram
        rules = page.get_by_role("region", name="Security rules", exact=True)
        ssh = rules.get_by_role("row").filter(has_text="ssh-only-from-vpn")
        assert ssh.get_by_text("pass", exact=True).count() == 1
        assert rules.get_by_text("fail", exact=True).count() == 0
        checklist = page.get_by_role("region", name="Port opening checklist", exact=True)
        monitoring = checklist.get_by_role("row").filter(has_text="Monitoring and alerting")
        assert "needs a person" in monitoring.inner_text()
        diagram = page.get_by_role("img", name="Diagram of the flows", exact=True)
        assert f"({platform.manager_port}) Manager" in diagram.inner_text()
        tab.check("matrix")

        # a viewer: no edit actions, no secrets
        platform.call(
            "POST",
            "/users",
            {"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD},
            expect=201,
        )
        viewer = browser.open_page()
        sign_in(viewer, "vera", VIEWER_PASSWORD)
        for route, heading in (
            ("/apis", "API proxies"),
            ("/apis/default/shop", "shop in default"),
            ("/apis/default/shop/policies", "Policies of shop"),
            ("/consumers/acme", "acme"),
            ("/environments/dev", "Environment dev"),
            ("/global-policies", "Global policies"),
            ("/alerts", "Alerts"),
        ):
            viewer.go(route, heading)
            viewer.check("viewer" + route.replace("/", "-"))
            main = viewer.page.locator("main")
            text = main.inner_text()
            assert key not in text
            assert rotated not in text
            actions = ("New API proxy", "Edit", "Rotate", "Deploy", "Roll back", "Remove", "Delete")
            for action in (*actions, "Create rule", "Create channel", "Create silence"):
                assert viewer.page.get_by_role("button", name=action, exact=True).count() == 0
                assert viewer.page.get_by_role("link", name=action, exact=True).count() == 0, (
                    route,
                    action,
                )
            assert viewer.page.locator("button", has_text="Delete").count() == 0
        assert viewer.page.get_by_role("link", name="Audit log", exact=True).count() == 0
        assert viewer.page.get_by_role("link", name="Users", exact=True).count() == 0

        # sign out ends the session
        viewer.page.get_by_role("button", name="Sign out", exact=True).click()
        viewer.wait_heading("Sign in")
        viewer.page.goto(platform.manager_url + "/#/apis")
        viewer.wait_heading("Sign in")

        for opened in (tab, viewer):
            assert opened.hosts == {f"127.0.0.1:{platform.manager_port}"}
            assert opened.errors == []
        assert tab.violations == {}
        assert viewer.violations == {}


def test_the_api_docs_load_swagger_ui_from_the_manager(platform: Platform, tmp_path: Path) -> None:
    with chromium(platform.manager_url, tmp_path / "shots") as browser:
        tab = browser.open_page()
        tab.page.goto(platform.manager_url + "/api/v1/docs")
        tab.page.get_by_text("/api/v1/apis").first.wait_for()
        tab.page.screenshot(path=str(tab.shots / "api-docs.png"))
        assert tab.hosts == {f"127.0.0.1:{platform.manager_port}"}
        assert tab.errors == []
