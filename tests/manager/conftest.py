from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings

ROLES = ("admin", "api_manager", "deployer", "security_officer", "viewer")
PASSWORD = "correct horse battery staple"


def settings_in(tmp_path: Path, **extra: Any) -> ManagerSettings:
    """A manager on SQLite under ``tmp_path``: no probes (tests drive them), no login delay."""
    base: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path}/manager.db",
        "data_dir": tmp_path,
        "secret_file": tmp_path / "cluster.secret",
        "bootstrap_file": tmp_path / "bootstrap.json",
        "push_timeout": 2.0,
        "probe_interval": 0,
        "login_failure_delay": 0,
    }
    return ManagerSettings(**(base | extra))


@pytest.fixture
def settings(tmp_path: Path) -> ManagerSettings:
    return settings_in(tmp_path)


@pytest.fixture
def manager(settings: ManagerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def open_manager(settings: ManagerSettings) -> Iterator[TestClient]:
    """An admin client of a manager allowed to import from loopback (the tests' document
    servers), with an 8 KiB import limit; project ``default`` exists."""
    allowed = settings.model_copy(
        update={"import_allow_private_hosts": True, "import_max_bytes": 8192}
    )
    with TestClient(create_app(allowed), raise_server_exceptions=False) as client:
        assert allowed.bootstrap_file is not None
        token = json.loads(Path(allowed.bootstrap_file).read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        client.post("/api/v1/projects", json={"name": "default"})
        yield client


@pytest.fixture
def admin(manager: TestClient, settings: ManagerSettings) -> TestClient:
    assert settings.bootstrap_file is not None
    token = json.loads(settings.bootstrap_file.read_text())["token"]
    manager.headers["Authorization"] = f"Bearer {token}"
    return manager


def bootstrap_password(settings: ManagerSettings) -> str:
    """The first admin's generated password (handed over once in the bootstrap file)."""
    assert settings.bootstrap_file is not None
    password: str = json.loads(settings.bootstrap_file.read_text())["password"]
    return password


def browser_for(client: TestClient) -> TestClient:
    """Another client of the same running app (its own cookies, no token, no second lifespan)."""
    return TestClient(client.app, raise_server_exceptions=False)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in with a password; returns the CSRF token (the cookies stay in the client)."""
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


@pytest.fixture
def role_tokens(admin: TestClient, settings: ManagerSettings) -> dict[str, str]:
    """A personal access token per role, each made by that user after a password login."""
    tokens: dict[str, str] = {}
    for role in ROLES:
        username = f"{role.replace('_', '-')}-user"
        created = admin.post(
            "/api/v1/users", json={"username": username, "role": role, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        browser = browser_for(admin)
        csrf = login(browser, username)
        made = browser.post(
            "/api/v1/tokens",
            json={"name": "tests", "current_password": PASSWORD},
            headers={"X-CSRF-Token": csrf},
        )
        assert made.status_code == 201, made.text
        tokens[role] = made.json()["token"]
    return tokens


@pytest.fixture
def as_role(admin: TestClient, role_tokens: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """Headers that authenticate as the user of one role."""

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {role_tokens[role]}"}

    return headers
