"""Access control: users, password login with session cookie + CSRF, tokens, login lockout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from portway.manager.auth import LoginGuard
from portway.manager.settings import ManagerSettings
from tests.manager.conftest import PASSWORD, bootstrap_password, browser_for, login


def make_user(admin: TestClient, username: str = "alice", role: str = "viewer") -> None:
    response = admin.post(
        "/api/v1/users", json={"username": username, "role": role, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text


def test_users_crud_is_admin_only_and_audited(
    admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    make_user(admin, "bob", "deployer")
    assert admin.get("/api/v1/users/bob").json()["role"] == "deployer"
    assert "password_hash" not in admin.get("/api/v1/users/bob").text
    changed = admin.patch("/api/v1/users/bob", json={"role": "api_manager"})
    assert changed.status_code == 200
    assert changed.json()["role"] == "api_manager"
    for role in ("api_manager", "deployer", "security_officer", "viewer"):
        denied = admin.get("/api/v1/users", headers=as_role(role))
        assert denied.status_code == 403, role
        assert denied.json()["error"] == "forbidden"
    assert admin.delete("/api/v1/users/bob").status_code == 204
    assert admin.get("/api/v1/users/bob").status_code == 404
    actions = [r["action"] for r in admin.get("/api/v1/audit").json()["items"]]
    assert {"user.create", "user.update", "user.delete"} <= set(actions)


def test_a_generated_password_is_shown_once_and_works(admin: TestClient) -> None:
    created = admin.post("/api/v1/users", json={"username": "carol", "role": "viewer"})
    assert created.status_code == 201
    password = created.json()["password"]
    assert "password" not in admin.get("/api/v1/users/carol").json()
    browser = browser_for(admin)
    login(browser, "carol", password)
    assert browser.get("/api/v1/me").json() == {"username": "carol", "role": "viewer"}


def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(admin: TestClient) -> None:
    assert admin.patch("/api/v1/users/admin", json={"role": "viewer"}).status_code == 409
    assert admin.patch("/api/v1/users/admin", json={"disabled": True}).status_code == 409
    assert admin.delete("/api/v1/users/admin").status_code == 409
    make_user(admin, "second-admin", "admin")
    assert admin.patch("/api/v1/users/admin", json={"role": "viewer"}).status_code == 200


def test_weak_passwords_and_bad_usernames_are_422(admin: TestClient) -> None:
    short = admin.post(
        "/api/v1/users", json={"username": "dave", "role": "viewer", "password": "short"}
    )
    assert short.status_code == 422
    assert short.json()["details"][0]["field"] == "body.password"
    bad = admin.post("/api/v1/users", json={"username": "no spaces", "role": "viewer"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "body.username"
    role = admin.post("/api/v1/users", json={"username": "dave", "role": "root"})
    assert role.json()["details"][0]["field"] == "body.role"


def test_session_cookie_flags(admin: TestClient) -> None:
    make_user(admin)
    browser = browser_for(admin)
    response = browser.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("portway_session="))
    csrf = next(c for c in cookies if c.startswith("portway_csrf="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Path=/" in session
    assert "Secure" not in session  # off unless cookie_secure is set
    assert "HttpOnly" not in csrf
    assert "SameSite=strict" in csrf
    assert response.headers["Cache-Control"] == "no-store"


def test_secure_cookie_flag_is_configurable(settings: object, tmp_path: object) -> None:
    from portway.manager.app import create_app
    from portway.manager.settings import ManagerSettings

    assert isinstance(settings, ManagerSettings)
    secure = settings.model_copy(update={"cookie_secure": True})
    with TestClient(create_app(secure)) as client:
        import json

        assert secure.bootstrap_file is not None
        password = json.loads(secure.bootstrap_file.read_text())["password"]
        response = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        )
        assert response.status_code == 200
        assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


def test_unsafe_session_requests_need_the_csrf_header(admin: TestClient) -> None:
    make_user(admin, "alice", "api_manager")
    browser = browser_for(admin)
    csrf = login(browser, "alice")
    assert browser.get("/api/v1/projects").status_code == 200  # safe: no header needed
    missing = browser.post("/api/v1/projects", json={"name": "p1"})
    assert missing.status_code == 403
    assert missing.json()["error"] == "csrf_failed"
    wrong = browser.post("/api/v1/projects", json={"name": "p1"}, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    ok = browser.post("/api/v1/projects", json={"name": "p1"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text
    assert admin.get("/api/v1/projects").json()[0]["name"] == "p1"


def test_a_csrf_header_matching_a_planted_cookie_is_refused(admin: TestClient) -> None:
    """Double submit is bound to the session: a cookie + header pair the attacker chose fails."""
    make_user(admin, "alice", "api_manager")
    browser = browser_for(admin)
    login(browser, "alice")
    browser.cookies.set("portway_csrf", "attacker-chosen")
    forged = browser.post(
        "/api/v1/projects", json={"name": "p1"}, headers={"X-CSRF-Token": "attacker-chosen"}
    )
    assert forged.status_code == 403


def test_logout_ends_the_session(admin: TestClient) -> None:
    make_user(admin)
    browser = browser_for(admin)
    csrf = login(browser, "alice")
    session = browser.cookies.get("portway_session")
    assert browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    stale = browser_for(admin)
    stale.cookies.set("portway_session", session or "")
    assert stale.get("/api/v1/me").status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(admin: TestClient) -> None:
    make_user(admin)
    browser = browser_for(admin)
    wrong = browser.post("/api/v1/auth/login", json={"username": "alice", "password": "nope"})
    unknown = browser.post("/api/v1/auth/login", json={"username": "zed", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"]
    assert "portway_session" not in browser.cookies


def test_disabled_users_cannot_log_in_or_use_tokens(
    admin: TestClient, role_tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {role_tokens['viewer']}"}
    assert admin.get("/api/v1/me", headers=headers).status_code == 200
    admin.patch("/api/v1/users/viewer-user", json={"disabled": True})
    assert admin.get("/api/v1/me", headers=headers).status_code == 401
    browser = browser_for(admin)
    refused = browser.post(
        "/api/v1/auth/login", json={"username": "viewer-user", "password": PASSWORD}
    )
    assert refused.status_code == 401


def test_repeated_failures_lock_the_username_out(admin: TestClient) -> None:
    make_user(admin)
    browser = browser_for(admin)
    for _ in range(5):
        failed = browser.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "wrong password"}
        )
        assert failed.status_code == 401
    locked = browser.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["error"] == "locked_out"
    assert int(locked.headers["Retry-After"]) > 0
    # another user from the same address is not locked by alice's failures alone
    make_user(admin, "bob")
    assert (
        browser.post(
            "/api/v1/auth/login", json={"username": "bob", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_login_guard_locks_per_ip_and_slows_down_then_unlocks() -> None:
    now = [1000.0]
    guard = LoginGuard(
        max_user_failures=3,
        max_ip_failures=5,
        window=60,
        lockout=300,
        base_delay=0.25,
        max_delay=1.0,
        clock=lambda: now[0],
    )
    delays = [guard.failed("alice", "10.0.0.1") for _ in range(2)]
    assert delays == [0.25, 0.5]  # doubling: slowed down before any lockout
    assert guard.locked_for("alice", "10.0.0.1") == 0
    guard.failed("alice", "10.0.0.1")
    assert guard.locked_for("alice", "10.0.0.9") == 300  # the username, from anywhere
    for user in ("u1", "u2"):
        guard.failed(user, "10.0.0.1")
    assert guard.locked_for("someone-else", "10.0.0.1") == 300  # the address, for anyone
    assert guard.locked_for("someone-else", "10.0.0.2") == 0
    now[0] += 301
    assert guard.locked_for("alice", "10.0.0.1") == 0
    guard.failed("alice", "10.0.0.1")
    guard.succeeded("alice")
    assert guard.failed("alice", "10.0.0.3") == 0.25  # a success resets the username's count


def test_failures_outside_the_window_are_forgotten() -> None:
    now = [0.0]
    guard = LoginGuard(
        max_user_failures=2,
        max_ip_failures=100,
        window=10,
        lockout=60,
        base_delay=0,
        max_delay=0,
        clock=lambda: now[0],
    )
    guard.failed("alice", "ip")
    now[0] = 11
    guard.failed("alice", "ip")
    assert guard.locked_for("alice", "ip") == 0


def test_tokens_are_shown_once_listed_without_values_and_revocable(
    admin: TestClient, settings: ManagerSettings
) -> None:
    made = admin.post(
        "/api/v1/tokens",
        json={"name": "ci", "expires_in_days": 7, "current_password": bootstrap_password(settings)},
    )
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("pwt_")
    listed = admin.get("/api/v1/tokens").json()
    assert token not in str(listed)
    row = next(t for t in listed if t["name"] == "ci")
    assert row["active"] is True
    assert row["expires_at"] is not None
    headers = {"Authorization": f"Bearer {token}"}
    assert admin.get("/api/v1/me", headers=headers).status_code == 200
    assert admin.delete(f"/api/v1/tokens/{row['id']}").status_code == 204
    assert admin.get("/api/v1/me", headers=headers).status_code == 401
    again = next(t for t in admin.get("/api/v1/tokens").json() if t["name"] == "ci")
    assert again["active"] is False
    assert again["revoked_at"] is not None
    assert token not in str(admin.get("/api/v1/audit").json()["items"])


def test_expired_tokens_are_refused(admin: TestClient) -> None:
    from datetime import timedelta

    from portway.manager.auth import issue_token, user_by_name

    store = admin.app.state.services.store  # type: ignore[attr-defined]
    assert admin.portal is not None
    me = admin.portal.call(user_by_name, store, "admin")
    assert me is not None
    token, _ = admin.portal.call(issue_token, store, me.id, "old", timedelta(seconds=-1))
    assert admin.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_user_cannot_revoke_someone_elses_token(
    admin: TestClient, as_role: Callable[[str], dict[str, str]], settings: ManagerSettings
) -> None:
    mine = admin.post(
        "/api/v1/tokens", json={"name": "mine", "current_password": bootstrap_password(settings)}
    ).json()
    other = admin.delete(f"/api/v1/tokens/{mine['id']}", headers=as_role("viewer"))
    assert other.status_code == 404
    assert (
        admin.get("/api/v1/me", headers={"Authorization": f"Bearer {mine['token']}"}).status_code
        == 200
    )


def test_admin_can_list_and_revoke_a_users_tokens(
    admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    [token] = admin.get("/api/v1/users/viewer-user/tokens").json()
    assert admin.delete(f"/api/v1/users/viewer-user/tokens/{token['id']}").status_code == 204
    assert admin.get("/api/v1/me", headers=as_role("viewer")).status_code == 401


def test_changing_a_password_ends_sessions(admin: TestClient) -> None:
    make_user(admin)
    browser = browser_for(admin)
    csrf = login(browser, "alice")
    changed = browser.put(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another long password"},
        headers={"X-CSRF-Token": csrf},
    )
    assert changed.status_code == 204
    assert browser.get("/api/v1/me").status_code == 401
    login(browser_for(admin), "alice", "another long password")


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer pwt_x y"])
def test_malformed_authorization_is_401(manager: TestClient, header: str) -> None:
    assert manager.get("/api/v1/me", headers={"Authorization": header}).status_code == 401
