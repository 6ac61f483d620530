"""Worker settings: accepted and refused with exact messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from portway.http import ServerLimits
from portway.worker.settings import WorkerSettings, server_limits


def test_defaults_and_limits() -> None:
    settings = WorkerSettings()
    assert settings.port == 8080
    assert settings.processes >= 1
    assert server_limits(settings.limits) == ServerLimits()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"https_port": 8443}, "https_port and redirect_port need tls"),
        ({"port": None}, "at least one of port and https_port is required"),
        ({"processes": 2, "reuse_port": False}, "processes > 1 needs reuse_port"),
        ({"trusted_proxies": ["10.0.0.0/8", "nope"]}, "'nope' is not an IP network"),
        (
            {"tls": {"cert_file": "c.pem", "require_client_cert": True}},
            "require_client_cert needs client_ca_file",
        ),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkerSettings.model_validate(fields)
