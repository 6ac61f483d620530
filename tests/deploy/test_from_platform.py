"""``portway deployment render --config portway.yaml``: the balancer follows the platform file."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.cli import main
from tests.deploy.support import check, tool

PLATFORM = """\
zones: {dmz: [10.20.0.0/24], lan: [10.30.0.0/24], vpn: [10.8.0.0/24]}
hosts:
  - {name: lb-1, address: 10.20.0.5, components: [load_balancer]}
  - {name: worker-1, address: 10.20.0.11, components: [worker]}
  - {name: worker-2, address: 10.20.0.12, components: [worker]}
  - {name: manager-1, address: 10.30.0.2, components: [manager]}
manager: {host: 0.0.0.0, port: 8080}
workers:
  prod: {port: WORKER_PORT}
load_balancer: {kind: haproxy, public_names: [api.example.test], https_port: 443, http_port: 80}
"""


def render(tmp_path: Path, worker_port: int, *extra: str) -> str:
    config = tmp_path / "portway.yaml"
    config.write_text(PLATFORM.replace("WORKER_PORT", str(worker_port)))
    out = tmp_path / f"haproxy-{worker_port}.cfg"
    argv = ["deployment", "render", "--target", "haproxy", "--config", str(config)]
    assert main([*argv, *extra, "--lab-ca", str(tmp_path / "ca"), "-o", str(out)]) == 0
    return out.read_text()


def test_the_balancer_config_follows_the_workers_port_in_the_file(tmp_path: Path) -> None:
    first = render(tmp_path, 8080, "--environment", "prod")
    assert "10.20.0.11:8080" in first
    assert "10.20.0.12:8080" in first
    moved = render(tmp_path, 9090)  # one environment: --environment may be left out
    assert "10.20.0.11:9090" in moved
    assert "10.20.0.12:9090" in moved
    assert ":8080 " not in moved.replace("10.30.0.2:8080", "")
    result = check([tool("haproxy"), "-c", "-f", str(tmp_path / "haproxy-9090.cfg")])
    assert result.returncode == 0, result.stderr


def test_an_unknown_environment_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "portway.yaml"
    config.write_text(PLATFORM.replace("WORKER_PORT", "8080"))
    argv = ["deployment", "render", "--target", "nginx", "--config", str(config)]
    assert main([*argv, "--environment", "qa"]) == 2
    assert "workers.qa" in capsys.readouterr().err
