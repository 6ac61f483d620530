"""Metrics scrapes in the matrix: off unless a metrics port is configured, then on that port,
shown by ``portway matrix``, and refused when it collides with another listener."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from portway.errors import ConfigError
from tests.matrix.test_cli import run
from tests.matrix.test_platform_matrix import matrix_of


def test_metrics_flows_are_off_until_a_port_is_configured(tmp_path: Path) -> None:
    off = matrix_of({"workers": {"prod": {}}}, tmp_path)
    assert not off.flow("int-monitoring-worker-metrics").enabled
    assert not off.flow("int-monitoring-manager-metrics").enabled
    on = matrix_of(
        {"manager": {"metrics_port": 9101}, "workers": {"prod": {"metrics_port": 9100}}}, tmp_path
    )
    worker = on.flow("int-monitoring-worker-metrics")
    assert worker.enabled
    assert (worker.source, worker.destination, worker.ports.numbers) == (
        "monitoring",
        "worker",
        (9100,),
    )
    manager = on.flow("int-monitoring-manager-metrics")
    assert manager.enabled
    assert manager.ports.numbers == (9101,)


def test_a_metrics_port_on_another_listener_is_refused_by_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        matrix_of({"manager": {"port": 8080, "metrics_port": 8080}}, tmp_path)
    assert "manager.metrics_port" in str(caught.value) or "manager.port" in str(caught.value)
    with pytest.raises(Exception, match="metrics_port must differ"):
        matrix_of({"workers": {"prod": {"port": 8080, "metrics_port": 8080}}}, tmp_path)


def test_portway_matrix_shows_the_configured_scrape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "portway.yaml"
    config.write_text(yaml.safe_dump({"workers": {"prod": {"metrics_port": 9100}}}))
    code, out, _ = run(["matrix", "show", "--format", "json", "--config", str(config)], capsys)
    assert code == 0
    flows = {f["id"]: f for f in json.loads(out)["flows"]}
    scrape = flows["int-monitoring-worker-metrics"]
    assert scrape["enabled"] is True
    assert scrape["ports"] == [9100]
