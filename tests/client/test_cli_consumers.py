"""``portway consumers import`` against a real manager process: the CSV result file with the
generated secrets (a new 0600 file), idempotent re-import, dry run and per-row errors."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pytest

from tests.client.conftest import Manager
from tests.client.test_cli import run

CSV = "name,email,api_key,client\r\nshop,ops@shop.example.com,generate,generate\r\nblog,,,\r\n"


def test_import_writes_the_secrets_once_to_a_private_result_file(
    cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "consumers.csv"
    source.write_text(CSV)
    code, out, err = run(capsys, "consumers", "import", str(source), "--dry-run")
    assert code == 0, err
    assert "plan: 2 created, 0 updated, 0 unchanged, 0 failed" in out
    assert cli_env.api("GET", "/consumers").json()["items"] == []

    result = tmp_path / "result.csv"
    code, out, err = run(capsys, "consumers", "import", str(source), "--result", str(result))
    assert code == 0, err
    assert "imported: 2 created" in out
    assert "pwk_" not in out  # the secrets are in the file only
    assert stat.S_IMODE(result.stat().st_mode) == 0o600
    with result.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    secrets = {line["credential"]: line["secret"] for line in lines if line["name"] == "shop"}
    assert secrets["api_key"].startswith("pwk_")
    assert secrets["client"].startswith("pwcs_")

    code, _, err = run(capsys, "consumers", "import", str(source), "--result", str(result))
    assert code == 2  # never over an earlier result (it holds the only copy of the secrets)
    assert "File exists" in err

    code, out, err = run(capsys, "consumers", "import", str(source))
    assert code == 0, err
    assert "imported: 0 created, 0 updated, 2 unchanged, 0 failed" in out


def test_row_errors_name_row_and_field_and_exit_1(
    cli_env: Manager, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "consumers.json"
    source.write_text('{"consumers": [{"name": "ok"}, {"name": "bad", "email": "x"}]}')
    code, _, err = run(capsys, "consumers", "import", str(source))
    assert code == 1
    assert "422 validation_error" in err
    assert "rows[2].email" in err
    code, out, err = run(capsys, "consumers", "import", str(source), "--partial")
    assert code == 1
    assert "1 created, 0 updated, 0 unchanged, 1 failed" in out
    assert "email: " in out
