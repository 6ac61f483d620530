"""The DeploymentPlan: bad input is refused with the field named, through the CLI as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from portway.cli import main
from portway.errors import ConfigError
from tests.deploy.support import plan


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"workers": ["10.0.1.11"]}, "workers", "is not host:port"),
        ({"workers": ["10.0.1.11:99999"]}, "workers", "is not host:port"),
        ({"workers": ["a:1", "a:1"]}, "workers", "appears twice"),
        ({"workers": []}, "workers", "at least 1"),
        ({"manager": "manager"}, "manager", "is not host:port"),
        ({"public_names": ["api example.com"]}, "public_names", "is not a host name"),
        ({"public_names": ["api.example.com\nx"]}, "public_names", "is not a host name"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies", "is not an IP network"),
        ({"https_port": 80}, None, "must differ"),
        ({"environment": "Prod!"}, "environment", "pattern"),
        ({"worker_health_path": "/x y"}, "worker_health_path", "pattern"),
        ({"unknown": 1}, "unknown", "Extra inputs"),
        ({"kubernetes": {"worker_replicas": 5, "worker_max_replicas": 2}}, "kubernetes", "max"),
    ],
)
def test_bad_plans_name_the_field(changes: dict[str, Any], field: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plan(**changes)
    assert caught.value.field == field
    assert message in caught.value.message


def test_cli_refuses_a_bad_plan_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "plan.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "environment": "prod",
                "public_names": ["a.example"],
                "workers": ["w1"],
                "manager": "m:8080",
            }
        )
    )
    assert main(["deployment", "render", "--target", "haproxy", "--plan", str(bad)]) == 2
    assert "workers" in capsys.readouterr().err
    bad.write_text("environment: [unclosed")
    assert main(["deployment", "render", "--target", "nginx", "--plan", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    missing = tmp_path / "absent.yaml"
    assert main(["deployment", "render", "--target", "nginx", "--plan", str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_load_balancer_needs_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan().model_dump()))
    for target in ("haproxy", "nginx"):
        assert main(["deployment", "render", "--target", target, "--plan", str(path)]) == 2
        assert "certificate" in capsys.readouterr().err
