"""The management CLI against a real manager process: tables, JSON, declarative round trip,
deployments, token resolution and error reporting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from portway.cli import main
from portway.client import management_client as client_api
from portway.client.cli import resolve_token
from portway.config.declarative import declarative_json_schema
from tests.client.conftest import Manager

FILE = """
portway: 1
environments:
  - name: dev
projects:
  - name: default
apis:
  - name: orders
    base_path: /orders
    backends: [{url: "http://127.0.0.1:9"}]
  - name: carts
    base_path: /carts
    backends: [{url: "http://127.0.0.1:9"}]
"""

OPENAPI = """
openapi: 3.0.0
info: {title: Pets, version: "1"}
servers: [{url: "http://127.0.0.1:9/v1"}]
paths:
  /pets:
    get:
      responses:
        "200": {description: ok, content: {application/json: {example: [1, 2]}}}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def applied(cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    path = tmp_path / "portway.yaml"
    path.write_text(FILE)
    code, _, err = run(capsys, "apply", "-f", str(path))
    assert code == 0, err
    return path


def test_apply_dry_run_apply_again_and_export_round_trip(
    cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "portway.yaml"
    path.write_text(FILE)
    code, out, _ = run(capsys, "apply", "-f", str(path), "--dry-run")
    assert code == 0
    assert "+ apis default/orders" in out
    assert "plan: 4 to create, 0 to update, 0 to delete, 0 unchanged" in out
    assert cli_env.api("GET", "/projects").json() == []
    code, out, _ = run(capsys, "apply", "-f", str(path))
    assert "applied: 4 to create" in out
    code, out, _ = run(capsys, "apply", "-f", str(path))
    assert "applied: 0 to create, 0 to update, 0 to delete, 4 unchanged" in out

    code, exported, _ = run(capsys, "export")
    assert code == 0
    document = yaml.safe_load(exported)
    assert [a["name"] for a in document["apis"]] == ["carts", "orders"]
    exported_file = tmp_path / "exported.yaml"
    exported_file.write_text(exported)
    code, out, _ = run(capsys, "apply", "-f", str(exported_file))
    assert "0 to create, 0 to update, 0 to delete" in out

    changed = document | {"apis": [{**document["apis"][1], "description": "new"}]}
    exported_file.write_text(yaml.safe_dump(changed))
    code, out, _ = run(capsys, "apply", "-f", str(exported_file), "--prune", "--dry-run")
    assert "~ apis default/orders" in out
    assert "    description: '' -> 'new'" in out
    assert "- apis default/carts" in out
    code, out, _ = run(capsys, "apply", "-f", str(exported_file), "--output", "json")
    assert json.loads(out)["summary"]["update"] == 1


def test_api_list_get_and_json(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "api", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "PROJECT",
        "NAME",
        "BASE",
        "PATH",
        "ENDPOINTS",
        "BACKENDS",
        "DEPLOYED",
    ]
    assert lines[1].split()[:3] == ["default", "carts", "/carts"]
    code, out, _ = run(capsys, "api", "list", "--output", "json", "--name-contains", "ord")
    assert [r["name"] for r in json.loads(out)] == ["orders"]
    code, out, _ = run(capsys, "api", "get", "default/orders")
    assert yaml.safe_load(out)["base_path"] == "/orders"
    code, out, _ = run(capsys, "api", "get", "orders", "--output", "json")
    assert json.loads(out)["version"] == 1


def test_api_list_follows_the_cursor_or_stops_at_the_limit(
    applied: Path,
    cli_env: Manager,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("users", "zebras"):
        body = {"name": name, "base_path": f"/{name}", "backends": [{"url": "http://127.0.0.1:9"}]}
        assert cli_env.api("POST", "/projects/default/apis", body).status_code == 201
    monkeypatch.setattr(client_api, "_PAGE", 1)  # one item per page: every page is followed
    code, out, _ = run(capsys, "api", "list", "--output", "json")
    assert code == 0
    assert [r["name"] for r in json.loads(out)] == ["carts", "orders", "users", "zebras"]
    code, out, _ = run(capsys, "api", "list", "--output", "json", "--limit", "3")
    assert [r["name"] for r in json.loads(out)] == ["carts", "orders", "users"]
    with pytest.raises(SystemExit) as usage:
        main(["api", "list", "--limit", "0"])
    assert usage.value.code == 2
    assert "--limit: must be at least 1" in capsys.readouterr().err


def test_api_create_from_a_file_and_from_openapi(
    applied: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api_file = tmp_path / "api.yaml"
    api_file.write_text("name: users\nbase_path: /users\nbackends: [{url: 'http://127.0.0.1:9'}]\n")
    code, out, err = run(capsys, "api", "create", "-f", str(api_file))
    assert code == 0, err
    assert out == "created default/users at /users with 0 endpoint(s)\n"
    spec = tmp_path / "pets.yaml"
    spec.write_text(OPENAPI)
    code, out, err = run(
        capsys, "api", "create", "--openapi", str(spec), "--name", "pets", "--mock"
    )
    assert code == 0, err
    assert out == "created default/pets at /pets with 1 endpoint(s)\n"


def test_deploy_rollback_and_history_without_workers(
    applied: Path, cli_env: Manager, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "deploy", "orders", "--env", "dev", "--note", "first")
    assert code == 0
    assert out.splitlines()[0] == "deploy default/orders@1 -> dev revision 1"
    assert "(none)" in out  # no worker registered yet
    cli_env.api("PATCH", "/projects/default/apis/orders", {"description": "v2"})
    code, out, _ = run(capsys, "deploy", "orders", "carts", "--env", "dev")
    assert out.splitlines()[0] == "batch default/orders@2, default/carts@1 -> dev revision 2"
    code, out, _ = run(
        capsys, "rollback", "orders", "--env", "dev", "--to", "1", "--output", "json"
    )
    assert json.loads(out)["api_revision"] == 1
    revision = cli_env.api("GET", "/environments/dev/revision").json()
    assert {d["api"]["name"]: d["api_revision"] for d in revision["apis"]} == {
        "carts": 1,
        "orders": 1,
    }
    code, out, _ = run(capsys, "undeploy", "carts", "--env", "dev")
    assert code == 0
    code, out, _ = run(capsys, "api", "list", "--environment", "dev", "--output", "json")
    assert [r["name"] for r in json.loads(out)] == ["orders"]


def test_errors_are_reported_with_fields_and_exit_1(
    applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rollback", "orders", "--env", "dev", "--to", "7")
    assert code == 1
    assert "404 not_found" in err
    code, _, err = run(capsys, "deploy", "orders", "--env", "nope")
    assert code == 1
    assert "environments/nope not found" in err


def test_invalid_files_name_the_field(
    cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apis:\n  - name: x\n    base_path: nope\n")
    code, _, err = run(capsys, "apply", "-f", str(bad))
    assert code == 1
    assert "422 validation_error" in err
    assert "body.apis[0].base_path" in err


def test_workers_table_and_json(applied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "workers")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "ENVIRONMENT", "STATE"]
    code, out, _ = run(capsys, "workers", "--output", "json", "--env", "dev")
    assert json.loads(out) == []


def test_schema_is_the_published_one(
    cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == declarative_json_schema()
    assert json.loads(out) == cli_env.api("GET", "/schema/declarative").json()
    target = tmp_path / "schema.json"
    run(capsys, "schema", "-f", str(target))
    assert json.loads(target.read_text())["$id"].endswith("declarative-v1.json")


def test_token_resolution_order(tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("pwt_from_file\n")
    args: Any = argparse.Namespace(token=None, token_file=str(token_file))
    assert resolve_token(args, {}) == "pwt_from_file"
    assert resolve_token(args, {"PORTWAY_TOKEN": "pwt_env"}) == "pwt_env"
    args.token = "pwt_flag"
    assert resolve_token(args, {"PORTWAY_TOKEN": "pwt_env"}) == "pwt_flag"
    missing: Any = argparse.Namespace(token=None, token_file=str(tmp_path / "none"))
    assert resolve_token(missing, {}) is None


def test_the_default_token_file_is_used(
    manager: Manager,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("PORTWAY_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "workers", "--manager", manager.url)
    assert code == 1
    assert "401" in err
    assert "hint:" in err
    (tmp_path / "var" / "portway").mkdir(parents=True)
    (tmp_path / "var" / "portway" / "admin.token").write_text(manager.token)
    code, _, err = run(capsys, "workers", "--manager", manager.url)
    assert code == 0, err


def test_an_unreachable_manager_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.processes import free_port

    monkeypatch.setenv("PORTWAY_TOKEN", "pwt_x")
    code, _, err = run(capsys, "workers", "--manager", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach the manager" in err


def test_usage_errors_exit_2_without_calling_the_manager(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.processes import free_port

    monkeypatch.setenv("PORTWAY_TOKEN", "pwt_x")
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: a call would exit 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("apis: [unclosed\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    missing = tmp_path / "missing.yaml"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    for argv, message in [
        (["api", "create"], "give -f FILE (an API proxy) or --openapi DOCUMENT"),
        (["api", "create", "--openapi", str(listed)], "--openapi needs --name"),
        (["api", "create", "-f", str(listed)], f"{listed} must hold one API proxy object"),
        (["apply", "-f", str(missing)], f"{missing}: No such file or directory\n"),
        (["apply", "-f", str(binary)], f"{binary}: not UTF-8 text\n"),
        (["apply", "-f", str(broken)], f"{broken}: while parsing"),
        (["apply", "-f", str(listed)], f"{listed} must hold a mapping (the declarative file)"),
    ]:
        code, out, err = run(capsys, *argv, "--manager", nowhere)
        assert (code, out) == (2, ""), (argv, err)
        assert err.startswith(f"portway: error: {message}"), (argv, err)
        assert "Traceback" not in err
