"""Identity rules of the management API: one user per case-folded name, no weak passwords,
tokens end with the password or the user, minting a token needs the password, and password checks
outside the login share its lockout."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.settings import ManagerSettings
from tests.manager.conftest import PASSWORD, bootstrap_password, browser_for, login

NEW_PASSWORD = "a different long passphrase"


def make_user(admin: TestClient, username: str, role: str = "viewer") -> Any:
    return admin.post(
        "/api/v1/users", json={"username": username, "role": role, "password": PASSWORD}
    )


def try_login(client: TestClient, username: str, password: str = PASSWORD) -> int:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return response.status_code


def mint(client: TestClient, password: str | None, headers: dict[str, str] | None = None) -> Any:
    body: dict[str, Any] = {"name": "t"}
    if password is not None:
        body["current_password"] = password
    return client.post("/api/v1/tokens", json=body, headers=headers or {})


def user_token(admin: TestClient, username: str) -> dict[str, str]:
    browser = browser_for(admin)
    csrf = login(browser, username)
    made = mint(browser, PASSWORD, {"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


# usernames ---------------------------------------------------------------------------------
def test_usernames_are_one_user_in_any_letter_case(admin: TestClient) -> None:
    created = make_user(admin, "Alice")
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "alice"  # stored case-folded
    for spelling in ("alice", "ALICE", "aLiCe"):
        assert try_login(browser_for(admin), spelling) == 200, spelling
        assert admin.get(f"/api/v1/users/{spelling}").status_code == 200
        duplicate = make_user(admin, spelling)
        assert duplicate.status_code == 409, spelling
    assert len([u for u in admin.get("/api/v1/users").json() if u["username"] == "alice"]) == 1


def test_compatibility_forms_fold_to_the_same_name(admin: TestClient) -> None:
    """NFKC: full-width letters are the ASCII name; a lookalike that is another letter is not."""
    assert make_user(admin, "alice").status_code == 201
    assert try_login(browser_for(admin), "\uff41\uff4c\uff49\uff43\uff45") == 200  # full-width


@pytest.mark.parametrize("spelling", ["ADM\u0130N", "adm\u0131n", "adm\u0456n", "ad\u1d0din"])
def test_lookalike_letters_are_not_the_admin(
    admin: TestClient, settings: ManagerSettings, spelling: str
) -> None:
    """Turkish dotted/dotless i, Cyrillic i and small-capital M are other letters: no login as
    ``admin`` with its password, and no new user that would display like it."""
    assert try_login(browser_for(admin), spelling, bootstrap_password(settings)) == 401
    assert try_login(browser_for(admin), "ADMIN", bootstrap_password(settings)) == 200
    created = make_user(admin, spelling)
    assert created.status_code == 422
    assert created.json()["details"][0]["field"] == "body.username"


def test_users_stored_before_normalisation_keep_working(admin: TestClient) -> None:
    from portway.manager.auth import hash_password

    store = admin.app.state.services.store  # type: ignore[attr-defined]
    assert admin.portal is not None
    legacy = {
        "username": "Bob",
        "role": "viewer",
        "password_hash": hash_password(PASSWORD),
        "disabled": False,
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    admin.portal.call(store.insert, "users", "legacy-bob", legacy)
    assert try_login(browser_for(admin), "bob") == 200
    assert try_login(browser_for(admin), "Bob") == 200
    assert make_user(admin, "BOB").status_code == 409
    assert admin.patch("/api/v1/users/bob", json={"role": "deployer"}).status_code == 200
    # wrong current passwords of the legacy user count under the name the login uses
    browser = browser_for(admin)
    csrf = login(browser, "BOB")
    for _ in range(5):
        assert mint(browser, "wrong password!", {"X-CSRF-Token": csrf}).status_code == 422
    assert try_login(browser_for(admin), "bob") == 429


# passwords ---------------------------------------------------------------------------------
WEAK = [
    "short-pass",  # under 12 characters
    "qwerty123456",  # on the common list
    "QWERTY123456",  # the list in another case
    "\uff51\uff57\uff45\uff52\uff54\uff59123456",  # full-width spelling of a listed one
    "1q2w3e4r5t6y",
    "my name is carol, ok",  # contains the username
    "CAROL-carol-CAROL",  # the username in another case
]


@pytest.mark.parametrize("password", WEAK)
def test_weak_passwords_are_refused_at_create(admin: TestClient, password: str) -> None:
    refused = admin.post(
        "/api/v1/users", json={"username": "carol", "role": "viewer", "password": password}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"] == "body.password"
    assert admin.get("/api/v1/users/carol").status_code == 404


@pytest.mark.parametrize("password", WEAK)
def test_weak_passwords_are_refused_at_change(admin: TestClient, password: str) -> None:
    assert make_user(admin, "carol").status_code == 201
    by_admin = admin.patch("/api/v1/users/carol", json={"password": password})
    assert by_admin.status_code == 422, by_admin.text
    assert by_admin.json()["details"][0]["field"] == "body.password"
    browser = browser_for(admin)
    csrf = login(browser, "carol")
    by_self = browser.put(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": password},
        headers={"X-CSRF-Token": csrf},
    )
    assert by_self.status_code == 422, by_self.text
    assert by_self.json()["details"][0]["field"] == "body.new_password"
    assert try_login(browser_for(admin), "carol") == 200  # the old password still works


def test_a_short_username_does_not_refuse_every_password(admin: TestClient) -> None:
    created = admin.post(
        "/api/v1/users",
        json={"username": "al", "role": "viewer", "password": "always a long passphrase"},
    )
    assert created.status_code == 201, created.text


# tokens end with the password and the user -------------------------------------------------
def test_a_password_change_revokes_the_users_tokens(admin: TestClient) -> None:
    assert make_user(admin, "dave").status_code == 201
    token = user_token(admin, "dave")
    assert admin.get("/api/v1/me", headers=token).json()["username"] == "dave"
    changed = admin.put(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=token,
    )
    assert changed.status_code == 204, changed.text
    assert admin.get("/api/v1/me", headers=token).status_code == 401


def test_an_admin_password_reset_revokes_the_users_tokens(admin: TestClient) -> None:
    assert make_user(admin, "dave").status_code == 201
    token = user_token(admin, "dave")
    assert admin.patch("/api/v1/users/dave", json={"password": NEW_PASSWORD}).status_code == 200
    assert admin.get("/api/v1/me", headers=token).status_code == 401


def test_disabling_revokes_tokens_for_good(admin: TestClient) -> None:
    assert make_user(admin, "dave").status_code == 201
    token = user_token(admin, "dave")
    assert admin.patch("/api/v1/users/dave", json={"disabled": True}).status_code == 200
    assert admin.get("/api/v1/me", headers=token).status_code == 401
    assert admin.patch("/api/v1/users/dave", json={"disabled": False}).status_code == 200
    assert admin.get("/api/v1/me", headers=token).status_code == 401  # re-enabling: still gone
    assert all(not t["active"] for t in admin.get("/api/v1/users/dave/tokens").json())


# minting a token needs the password --------------------------------------------------------
def test_a_session_mints_a_token_only_with_the_current_password(admin: TestClient) -> None:
    assert make_user(admin, "erin").status_code == 201
    browser = browser_for(admin)
    csrf = login(browser, "erin")
    headers = {"X-CSRF-Token": csrf}
    missing = mint(browser, None, headers)
    assert missing.status_code == 422
    assert missing.json()["details"][0]["field"] == "body.current_password"
    wrong = mint(browser, "not the password at all", headers)
    assert wrong.status_code == 422
    assert wrong.json()["details"][0]["field"] == "body.current_password"
    assert mint(browser, PASSWORD.upper(), headers).status_code == 422  # passwords keep case
    assert mint(browser, PASSWORD, headers).status_code == 201
    assert len(admin.get("/api/v1/users/erin/tokens").json()) == 1


def test_a_token_mints_a_token_only_with_the_current_password(
    admin: TestClient, settings: ManagerSettings
) -> None:
    assert mint(admin, None).status_code == 422
    assert mint(admin, "wrong password here").status_code == 422
    assert mint(admin, bootstrap_password(settings)).status_code == 201


# the failed-login guard covers every password check ----------------------------------------
@pytest.mark.parametrize("where", ["password", "token"])
def test_wrong_current_passwords_lock_the_username_out(admin: TestClient, where: str) -> None:
    assert make_user(admin, "frank").status_code == 201
    token = user_token(admin, "frank")

    def attempt(password: str) -> Any:
        if where == "password":
            return admin.put(
                "/api/v1/me/password",
                json={"current_password": password, "new_password": NEW_PASSWORD},
                headers=token,
            )
        return mint(admin, password, token)

    for _ in range(5):  # login_max_failures_user
        assert attempt("wrong password!").status_code == 422
    locked = attempt(PASSWORD)  # even the right password now
    assert locked.status_code == 429, locked.text
    assert locked.json()["error"] == "locked_out"
    assert int(locked.headers["Retry-After"]) > 0
    assert try_login(browser_for(admin), "FRANK") == 429  # the login shares the lockout
    assert admin.get("/api/v1/me", headers=token).status_code == 200  # nothing changed


def test_login_failures_count_across_letter_case(admin: TestClient) -> None:
    assert make_user(admin, "gina").status_code == 201
    for spelling in ("gina", "GINA", "Gina", "gINA", "ginA"):
        assert try_login(browser_for(admin), spelling, "wrong password!") == 401
    assert try_login(browser_for(admin), "gina") == 429
