from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings


@pytest.fixture
def settings(tmp_path: Path) -> ManagerSettings:
    return ManagerSettings(
        store=f"sqlite:///{tmp_path}/manager.db",
        data_dir=tmp_path,
        secret_file=tmp_path / "cluster.secret",
        bootstrap_file=tmp_path / "bootstrap.json",
        push_timeout=2.0,
    )


@pytest.fixture
def manager(settings: ManagerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def admin(manager: TestClient, settings: ManagerSettings) -> TestClient:
    import json

    assert settings.bootstrap_file is not None
    token = json.loads(settings.bootstrap_file.read_text())["token"]
    manager.headers["Authorization"] = f"Bearer {token}"
    return manager
