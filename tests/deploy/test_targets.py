"""Every target validated by the real tool that reads it: ``haproxy -c``, ``nginx -t``,
``kubernetes-validate`` (the Kubernetes JSON schemas, offline) and ``systemd-analyze verify``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from portway.cli import main
from portway.deploy.cli import render
from portway.deploy.haproxy import render_haproxy
from portway.errors import ConfigError
from tests.deploy.support import check, plan, tool


def test_haproxy_config_is_valid_with_a_lab_ca(tmp_path: Path) -> None:
    out = tmp_path / "haproxy.cfg"
    args = ["--plan", str(_plan_file(tmp_path)), "--lab-ca", str(tmp_path / "ca")]
    assert main(["deployment", "render", "--target", "haproxy", *args, "-o", str(out)]) == 0
    result = check([tool("haproxy"), "-c", "-f", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    # the lab certificate names every public name and chains to the lab CA
    cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.example.com", "www.api.example.com"]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    # a second render reuses the CA (clients keep trusting it)
    assert main(["deployment", "render", "--target", "haproxy", *args, "-o", str(out)]) == 0
    assert x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes()) == ca


def test_haproxy_with_operator_certificates(tmp_path: Path) -> None:
    render(plan(), "haproxy", tmp_path / "ca")  # creates server-bundle.pem
    bundle = str(tmp_path / "ca" / "server-bundle.pem")
    text = render_haproxy(plan(certificate={"cert_file": bundle, "key_file": bundle}))
    out = tmp_path / "haproxy.cfg"
    out.write_text(text)
    result = check([tool("haproxy"), "-c", "-f", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    # HAProxy cannot take a key from an unrelated path: refused before HAProxy would fail
    with pytest.raises(ConfigError) as caught:
        render_haproxy(plan(certificate={"cert_file": "/etc/ssl/a.pem", "key_file": "/k.pem"}))
    assert caught.value.field == "certificate.key_file"


def test_haproxy_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    """The validation the other tests rely on does fail on a broken configuration."""
    render(plan(), "haproxy", tmp_path / "ca")
    text = render_haproxy(plan(), str(tmp_path / "ca" / "server-bundle.pem"))
    out = tmp_path / "haproxy.cfg"
    out.write_text(text.replace("retry-on conn-failure", "retry-on conn-failur"))
    assert check([tool("haproxy"), "-c", "-f", str(out)]).returncode != 0


def test_nginx_config_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "nginx.conf"
    args = ["--plan", str(_plan_file(tmp_path)), "--lab-ca", str(tmp_path / "ca")]
    assert main(["deployment", "render", "--target", "nginx", *args, "-o", str(out)]) == 0
    result = check([tool("nginx"), "-t", "-c", str(out), "-e", "stderr"])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(out.read_text().replace("ssl_protocols", "ssl_protocol"))
    assert check([tool("nginx"), "-t", "-c", str(broken), "-e", "stderr"]).returncode != 0


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_kubernetes_manifests_validate_against_the_schemas(tmp_path: Path) -> None:
    files = render(plan(trusted_proxies=["10.244.0.0/16"]), "kubernetes", tmp_path / "ca")
    docs = _documents(files["portway.yaml"])
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Deployment", "portway-manager"),
        ("Deployment", "portway-worker"),
        ("Deployment", "portway-load-balancer"),
        ("Service", "portway-worker"),
        ("Service", "portway-manager"),
        ("PodDisruptionBudget", "portway-worker"),
        ("HorizontalPodAutoscaler", "portway-worker"),
        ("ConfigMap", "portway-load-balancer"),
        ("Secret", "portway-cluster"),
        ("Secret", "portway-public-tls"),
        ("NetworkPolicy", "portway-default-deny"),
        ("NetworkPolicy", "portway-worker"),
        ("NetworkPolicy", "portway-manager"),
        ("NetworkPolicy", "portway-load-balancer"),
    ]:
        assert expected in kinds
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        labels = doc["spec"]["template"]["metadata"]["labels"]
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"]
            assert "readinessProbe" in container
            assert "livenessProbe" in container
        # every pod is selected by the NetworkPolicy of its component
        policies = [
            d
            for d in docs
            if d["kind"] == "NetworkPolicy"
            and d["metadata"]["namespace"] == doc["metadata"]["namespace"]
            and d["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
            and d["spec"]["podSelector"].get("matchLabels")
        ]
        assert policies, doc["metadata"]["name"]
    worker = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "portway-worker"
    )
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/_portway/ready"
    assert container["args"][container["args"].index("--trusted-proxy") + 1] == "10.244.0.0/16"
    # the worker's arguments are ones ``portway worker`` accepts
    from portway.cli import build_parser

    argv = [
        a.replace("$(POD_NAME)", "w").replace("$(POD_IP)", "10.0.0.1") for a in container["args"]
    ]
    build_parser().parse_args(argv)


def test_kubernetes_validation_catches_a_broken_manifest() -> None:
    docs = _documents(render(plan(), "kubernetes")["portway.yaml"])
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30", strict=True)


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    executable = str(Path(sys.executable).with_name("portway"))
    units = render(plan(systemd={"executable": executable}), "systemd")
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    result = check([analyze, "verify", *(str(tmp_path / n) for n in units)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "portway-worker@.service" in units
    worker = units["portway-worker@.service"]
    for directive in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "PrivateTmp=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert directive in worker
    # the ExecStart line is one ``portway worker`` accepts
    from portway.cli import build_parser

    exec_start = next(line for line in worker.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.split()[1:]
    build_parser().parse_args([a.replace("%i", "8080") for a in argv])
    with pytest.raises(ConfigError):
        render(plan(systemd={"data_dir": "/srv/portway"}), "systemd")


def _plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan().model_dump(exclude_defaults=True)))
    return path
