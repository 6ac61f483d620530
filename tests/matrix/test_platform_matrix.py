"""The matrix computed from ``portway.yaml``: a flow is there when a configured component uses
it, on the port of the configured URL or listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portway.config.platform_file import platform_from_mapping
from portway.local.profile import LocalProfile
from portway.matrix.model import AppProtocol, Matrix
from portway.matrix.platform import matrix_for
from portway.matrix.rules import check, standard_rules


def matrix_of(data: dict[str, Any], tmp_path: Path) -> Matrix:
    return matrix_for(platform_from_mapping(data, tmp_path, env={}))[1]


def ports_of(matrix: Matrix) -> set[int]:
    return {n for f in matrix.enabled_flows for n in f.ports.numbers}


def test_the_single_host_profile_has_no_mongodb_elasticsearch_or_cache_flow(
    tmp_path: Path,
) -> None:
    matrix = matrix_of(LocalProfile(data_dir=tmp_path).platform("local-worker"), tmp_path)
    assert not ports_of(matrix) & {25080, 27017, 9200, 9300, 5701, 6379}
    assert not [f.id for f in matrix.flows if "mongodb" in f.id or "cache" in f.id]
    assert not [f.id for f in matrix.flows if "elasticsearch" in f.id]
    assert {t.id for t in matrix.tables}.isdisjoint(
        {"worker_mongodb", "worker_elasticsearch", "worker_cache", "kubernetes"}
    )
    assert matrix.flow("vpn-manager-http").ports.numbers == (8081,)
    assert matrix.flow("int-manager-worker-deploy").ports.numbers == (8080,)
    assert check(matrix, standard_rules()) == []


def test_a_mongodb_store_brings_its_port_from_the_url(tmp_path: Path) -> None:
    matrix = matrix_of({"manager": {"store": "mongodb://db-1:27018,db-2:27018/portway"}}, tmp_path)
    assert matrix.flow("int-manager-mongodb").ports.numbers == (27018,)
    assert matrix.flow("int-mongodb-replica").ports.numbers == (27018,)
    with pytest.raises(Exception, match="unknown flow 'int-worker-mongodb'"):
        matrix.flow("int-worker-mongodb")  # workers never open the store


def test_a_redis_cache_is_6379_instead_of_5701(tmp_path: Path) -> None:
    matrix = matrix_of({"workers": {"prod": {"cache": "redis://cache:6379/0"}}}, tmp_path)
    assert matrix.flow("int-worker-cache").ports.numbers == (6379,)
    assert 5701 not in ports_of(matrix)
    assert [f.id for f in matrix.flows if "cache" in f.id] == ["int-worker-cache"]
    assert "Worker ↔ Cache (Redis)" in {t.title for t in matrix.tables}
    hazelcast = matrix_of({"workers": {"prod": {"cache": "hazelcast://cache/portway"}}}, tmp_path)
    assert hazelcast.flow("int-cache-cluster").ports.numbers == (5701,)


def test_elasticsearch_logs_bring_9200_and_9300_between_nodes(tmp_path: Path) -> None:
    matrix = matrix_of(
        {"manager": {"logs": "elasticsearch://es:9201"}, "workers": {"prod": {}}}, tmp_path
    )
    assert matrix.flow("int-manager-elasticsearch").ports.numbers == (9201,)
    assert matrix.flow("int-worker-elasticsearch").ports.numbers == (9201,)  # default: manager's
    assert matrix.flow("int-elasticsearch-cluster").ports.numbers == (9300,)


def test_smtp_and_webhooks_switch_their_flows_on(tmp_path: Path) -> None:
    off = matrix_of({}, tmp_path)
    assert not off.flow("out-manager-smtp").enabled
    assert not off.flow("out-manager-external-https").enabled
    on = matrix_of(
        {"manager": {"smtp": {"host": "relay", "ports": [25, 587]}, "webhooks": True}}, tmp_path
    )
    assert on.flow("out-manager-smtp").enabled
    assert on.flow("out-manager-smtp").ports.numbers == (25, 587)
    assert on.flow("out-manager-external-https").ports.numbers == (443,)


def test_tls_on_the_worker_moves_443_from_the_balancer_to_the_worker(tmp_path: Path) -> None:
    tls = {"cert_file": "c.pem", "key_file": "k.pem"}
    behind = matrix_of({"workers": {"prod": {"tls": tls, "https_port": 8443}}}, tmp_path)
    to_worker = behind.flow("int-lb-worker")
    assert (to_worker.ports.numbers, to_worker.protocol) == ((8443,), AppProtocol.HTTPS)
    assert behind.flow("in-lb-https").destination == "load_balancer"
    direct = matrix_of(
        {"load_balancer": {"kind": "none"},
         "workers": {"prod": {"tls": tls, "https_port": 443, "redirect_port": 80}}},
        tmp_path,
    )  # fmt: skip
    inbound = direct.flow("in-lb-https")
    assert (inbound.destination, inbound.ports.numbers) == ("worker", (443,))
    assert direct.flow("in-lb-http").ports.numbers == (80,)
    assert not [f.id for f in direct.flows if "load_balancer" in (f.source, f.destination)]
    assert check(direct, standard_rules()) == []


def test_kubernetes_enabled_adds_the_api_server_and_pod_flows(tmp_path: Path) -> None:
    assert not [f for f in matrix_of({}, tmp_path).flows if f.id.startswith("k8s-")]
    matrix = matrix_of({"kubernetes": {"enabled": True, "api_port": 16443}}, tmp_path)
    assert matrix.flow("k8s-kubelet-apiserver").ports.numbers == (16443,)
    assert matrix.flow("k8s-pod-pod").ports.dynamic
