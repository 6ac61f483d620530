"""``portway.yaml``: accepted and refused files, override order, paths beside the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portway.cli import main
from portway.config.platform_file import load_platform, platform_from_mapping
from portway.errors import ConfigError


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "portway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_gets_a_one_line_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "environments: {prod: {type: prod}}\nworkers:\n  prod: {port: 9200}\n")
    assert run(["config", "check", str(path)], capsys) == (
        0,
        f"{path}: valid (distributed: manager 127.0.0.1:8080 (store sqlite), "
        "workers [prod :9200], load balancer haproxy, 0 host(s))\n",
        "",
    )


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("workers:\n  prod: {port: 70000}\n",
         ["workers.prod.port: Input should be less than or equal to 65535"]),
        ("workers:\n  prod: {limits: {max_headers: 2}, prot: 1}\n",
         ["workers.prod.limits.max_headers: Input should be greater than or equal to 8",
          "workers.prod.prot: unknown key (not allowed here)"]),
        ("workers:\n  Prod: {}\n",
         ["workers.Prod: not a valid name: String should match pattern "
          "'^[a-z0-9][a-z0-9_-]{0,62}$'"]),
        ("workers:\n  prod: {redirect_port: 80}\n",
         ["workers.prod: https_port and redirect_port need tls"]),
        ("workers:\n  prod: {cache: memcached://x}\n",
         ["workers.prod.cache: 'memcached://x': use local://, redis://HOST:PORT/0 or "
          "hazelcast://HOST:PORT"]),
        ("environments: {dev: {}}\nworkers:\n  prod: {}\n",
         ["workers.prod: no such environment (environments: dev)"]),
        ("hosts:\n  - {name: lb-1, address: 10.0.0.300, components: [load_balancer]}\n",
         ["hosts[0].address: '10.0.0.300' is not an IP address"]),
        ("load_balancer: {kind: traefik}\n",
         ["load_balancer.kind: Input should be 'haproxy', 'nginx' or 'none'"]),
        ("manager: {port: 8080}\nlayout: single-host\nworkers:\n  prod: {port: 8080}\n",
         ["workers.prod.port: port 8080 is also manager.port (manager and worker on a "
          "single host); give each listener its own port"]),
        ("- just\n- a list\n", ["the file must be a mapping, not list"]),
    ],
)  # fmt: skip
def test_a_bad_file_names_each_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problems: list[str]
) -> None:
    path = write(tmp_path, text)
    code, out, err = run(["config", "check", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"portway: error: {path}: {p}" for p in problems]


def test_environment_beats_the_file_and_a_flag_beats_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "manager: {port: 9001, report_interval: 7}\n")
    env = {"PORTWAY_MANAGER__PORT": "9002", "PORTWAY_MANAGER__REPORT_INTERVAL": "8"}
    assert load_platform(path, env={}).manager.port == 9001
    from_env = load_platform(path, env=env)
    assert (from_env.manager.port, from_env.manager.report_interval) == (9002, 8.0)
    flagged = load_platform(path, env=env, overrides=[("manager.port", 9003)])
    assert (flagged.manager.port, flagged.manager.report_interval) == (9003, 8.0)


def test_a_bad_override_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, "workers:\n  prod: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_platform(path, env={"PORTWAY_WORKERS__PROD__PORT": "http"})
    assert str(caught.value) == (f"{path}: workers.prod.port: Input should be a valid integer")


def test_paths_are_relative_to_the_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    path = write(site, "manager: {store: 'sqlite:///db/config.db'}\nworkers:\n  prod: {}\n")
    monkeypatch.chdir(tmp_path)
    config = load_platform(Path("site/portway.yaml"), env={})
    assert config.manager.store == f"sqlite:///{site}/db/config.db"
    assert config.manager.logs == f"sqlite:///{site}/traffic.db"
    assert config.manager.secret_file == site / "cluster.secret"
    assert config.workers["prod"].state_dir == site / "worker-prod"
    assert config.workers["prod"].logs == config.manager.logs
    home = load_platform(path, env={"PORTWAY_HOME": str(tmp_path / "home")})
    assert home.manager.data_dir == tmp_path / "home"
    assert home.manager.store == f"sqlite:///{site}/db/config.db"  # the file's own value stays
    assert home.workers["prod"].state_dir == tmp_path / "home" / "worker-prod"


def test_other_portway_variables_are_not_keys(tmp_path: Path) -> None:
    config = platform_from_mapping(
        {}, tmp_path, env={"PORTWAY_HOME": str(tmp_path), "PORTWAY_DEBUG": "1"}
    )
    assert config.data_dir == tmp_path


def test_schema_platform_prints_the_files_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema", "platform"], capsys)
    schema = json.loads(out)
    assert code == 0
    assert schema["title"] == "portway.yaml"
    assert list(schema["properties"]) == [
        "layout", "data_dir", "zones", "hosts", "environments", "manager", "workers",
        "load_balancer", "network", "kubernetes",
    ]  # fmt: skip
    assert schema["additionalProperties"] is False
    manager = schema["$defs"]["ManagerConfig"]["properties"]
    assert {"store", "logs", "login_lockout", "import_timeout", "smtp", "webhooks"} <= set(manager)
    worker = schema["$defs"]["WorkerConfig"]["properties"]
    assert {"tls", "https_port", "redirect_port", "trusted_proxies", "limits",
            "drain_timeout", "cache", "logs"} <= set(worker)  # fmt: skip


def test_the_declarative_schema_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema"], capsys)
    assert code == 0
    assert json.loads(out)["title"] != "portway.yaml"
