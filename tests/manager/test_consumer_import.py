"""Bulk import of consumers with credentials (CSV and JSON): keyed by name and idempotent,
generated secrets shown once, per-row errors naming the row and field, all-or-nothing unless
``partial``, dry runs, caps, and a CSV result a spreadsheet cannot run as formulas."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from portway.config.revision import api_key_lookup
from portway.manager.consumer_import import MAX_ROWS
from portway.manager.settings import ManagerSettings
from tests.manager.test_consumers import C, consumer, deployed, pulled

__all__ = ["deployed"]

IMPORT = f"{C}/import"
CSV = (
    "name,email,roles,ip_allow,metadata.tier,api_key,basic_username,client\r\n"
    "shop,ops@shop.example.com,reader;writer,10.0.0.0/8;2001:db8::/32,gold,generate,shop-user,"
    "generate\r\n"
    "blog,,,,silver,generate,,\r\n"
)


def run(client: TestClient, fmt: str, document: str, **params: Any) -> Any:
    return client.post(IMPORT, json={"format": fmt, "document": document}, params=params)


def ok(client: TestClient, fmt: str, document: str, **params: Any) -> dict[str, Any]:
    response = run(client, fmt, document, **params)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    result: dict[str, Any] = response.json()
    return result


def names(client: TestClient) -> list[str]:
    return [c["name"] for c in client.get(C).json()["items"]]


def test_a_csv_import_creates_and_a_second_one_changes_nothing(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    first = ok(deployed, "csv", CSV)
    assert first["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "failed": 0}
    shop = first["rows"][0]
    assert (shop["row"], shop["name"], shop["status"]) == (2, "shop", "created")
    kinds = {c["kind"]: c for c in shop["credentials"]}
    assert set(kinds) == {"api_key", "basic", "client"}
    key = kinds["api_key"]["secret"]
    assert key.startswith("pwk_")
    assert kinds["basic"]["username"] == "shop-user"
    assert kinds["client"]["secret"].startswith("pwcs_")
    stored = deployed.get(f"{C}/shop").json()
    assert stored["email"] == "ops@shop.example.com"
    assert stored["roles"] == ["reader", "writer"]
    assert stored["metadata"] == {"tier": "gold"}
    snapshot = consumer(deployed, pulled(deployed, settings), "shop")
    assert api_key_lookup(key) in [c["lookup"] for c in snapshot["credentials"]]
    assert snapshot["ip_allow"] == ["10.0.0.0/8", "2001:db8::/32"]
    for path in tmp_path.glob("manager.db*"):  # shown once: stored only hashed
        data = path.read_bytes()
        for cred in kinds.values():
            assert cred["secret"].encode() not in data
    audit = str(deployed.get("/api/v1/audit").json()["items"])
    assert key not in audit
    assert "consumer.import" in audit

    revision = deployed.get("/api/v1/environments/dev").json()["desired_revision"]
    again = run(deployed, "csv", CSV)
    assert again.status_code == 200
    assert again.json()["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "failed": 0}
    assert "X-Portway-Published" not in again.headers
    assert key not in again.text  # never again
    for row in again.json()["rows"]:
        assert all(c["status"] == "unchanged" and c["secret"] is None for c in row["credentials"])
    assert len(deployed.get(f"{C}/shop/credentials").json()) == 3
    assert deployed.get("/api/v1/environments/dev").json()["desired_revision"] == revision

    # a changed cell updates that consumer only; an absent column keeps the stored value
    changed = ok(deployed, "csv", "name,metadata.tier\r\nshop,platinum\r\nblog,silver\r\n")
    assert [r["status"] for r in changed["rows"]] == ["updated", "unchanged"]
    stored = deployed.get(f"{C}/shop").json()
    assert stored["metadata"] == {"tier": "platinum"}
    assert stored["email"] == "ops@shop.example.com"


def test_a_json_import_with_grants_and_given_credentials(deployed: TestClient) -> None:
    document = {
        "consumers": [
            {
                "name": "partner",
                "grants": [{"api": "orders", "environments": ["dev"]}],
                "credentials": [
                    {"kind": "api_key", "key": "partner-key-0123456789abcdef", "label": "old"},
                    {"kind": "basic", "username": "partner", "password": "a long password 1"},
                ],
            }
        ]
    }
    result = ok(deployed, "json", json.dumps(document))
    [row] = result["rows"]
    assert row["status"] == "created"
    assert [c["secret"] for c in row["credentials"]] == [None, None]  # given, not echoed
    assert deployed.get(f"{C}/partner/grants").json()[0]["api"] == "orders"
    again = ok(deployed, "json", json.dumps(document))
    assert again["counts"]["unchanged"] == 1


def test_digest_credentials_import_idempotently_and_clash_by_realm(deployed: TestClient) -> None:
    digest = {"kind": "digest", "username": "ann", "password": "a long password 2", "realm": "r1"}
    document = {"consumers": [{"name": "ann", "credentials": [digest]}]}
    first = ok(deployed, "json", json.dumps(document))
    assert first["counts"]["created"] == 1
    assert ok(deployed, "json", json.dumps(document))["counts"]["unchanged"] == 1
    other = {"consumers": [{"name": "bob", "credentials": [digest]}]}
    clash = run(deployed, "json", json.dumps(other))
    assert clash.status_code == 422, clash.text
    assert "credentials[0].username" in clash.text
    elsewhere = {"consumers": [{"name": "bob", "credentials": [digest | {"realm": "r2"}]}]}
    assert ok(deployed, "json", json.dumps(elsewhere))["counts"]["created"] == 1


def test_a_failing_row_stores_nothing_unless_partial(deployed: TestClient) -> None:
    document = (
        "name,email,api_key\r\n"
        "good,good@example.com,generate\r\n"
        "bad,not-an-email,generate\r\n"
        "worse,,short\r\n"
    )
    failed = run(deployed, "csv", document)
    assert failed.status_code == 422
    problem = failed.json()
    assert "2 of 3 rows have errors; nothing was stored" in problem["message"]
    fields = [d["field"] for d in problem["details"]]
    assert fields == ["rows[3].email", "rows[4].credentials.0.key"]
    assert failed.headers["X-Correlation-ID"] == problem["correlation_id"]
    assert names(deployed) == []

    preview = ok(deployed, "csv", document, dry_run="true")
    assert preview["dry_run"] is True
    assert [r["status"] for r in preview["rows"]] == ["created", "failed", "failed"]
    assert preview["rows"][0]["credentials"] == [
        {"kind": "api_key", "status": "created", "secret": None, "id": None, "label": None,
         "key_prefix": None, "username": None, "client_id": None}
    ]  # fmt: skip
    assert names(deployed) == []

    partial = ok(deployed, "csv", document, partial="true")
    assert partial["counts"] == {"created": 1, "updated": 0, "unchanged": 0, "failed": 2}
    assert partial["rows"][0]["credentials"][0]["secret"].startswith("pwk_")
    assert names(deployed) == ["good"]


def test_conflicts_across_rows_and_consumers(deployed: TestClient) -> None:
    deployed.post(C, json={"name": "owner"})
    deployed.post(f"{C}/owner/credentials", json={"kind": "basic", "username": "taken"})
    document = (
        "name,basic_username,api_key\r\n"
        "one,taken,\r\n"
        "two,,same-key-0123456789abcdefgh\r\n"
        "three,,same-key-0123456789abcdefgh\r\n"
        "two,,\r\n"
        "four,,\r\n"
    )
    result = ok(deployed, "csv", document, dry_run="true")
    errors = {r["row"]: r["errors"] for r in result["rows"]}
    assert errors[2] == [
        {"field": "credentials[0].username", "message": "this username is already in use by "
         "another consumer"}
    ]  # fmt: skip
    assert errors[4][0]["message"] == "the same credential is also in row 3"
    assert errors[5][0] == {"field": "name", "message": "'two' is also in row 3"}
    assert errors[6] == []
    missing_api = ok(
        deployed, "json", json.dumps({"consumers": [{"name": "x", "grants": [{"api": "nope"}]}]}),
        dry_run="true",
    )  # fmt: skip
    assert missing_api["rows"][0]["errors"][0]["message"] == "no API proxy default/nope"


def test_caps_and_malformed_documents(deployed: TestClient) -> None:
    too_many = "name\r\n" + "".join(f"c{i}\r\n" for i in range(MAX_ROWS + 1))
    cases = [
        ("csv", too_many, f"at most {MAX_ROWS} rows"),
        ("csv", "name,password\r\nx,y\r\n", "unknown column 'password'"),
        ("csv", "email\r\na@b.example\r\n", "needs a name column"),
        ("csv", "name,name\r\na,b\r\n", "appears twice"),
        ("csv", "name\r\na,b\r\n", "more cells than the header"),
        ("csv", 'name\r\n"unterminated\r\n', "not valid CSV"),
        ("csv", "name\r\n", "no rows"),
        ("json", "[1, 2]", 'expected {"consumers": [...]}'),
        ("json", "{", "not valid JSON"),
    ]
    for fmt, document, message in cases:
        response = run(deployed, fmt, document)
        assert response.status_code == 422, (document[:40], response.text)
        assert message in response.json()["message"], response.text
        assert response.json()["details"][0]["field"] == "body.document"
    huge = run(deployed, "csv", "name\r\n" + "x" * (4 * 1024 * 1024))
    assert huge.status_code == 422
    assert "body.document" in huge.text
    not_object = ok(deployed, "json", '{"consumers": [1]}', dry_run="true")
    assert not_object["rows"][0]["errors"][0]["message"] == "each consumer is a JSON object"
    bad_format = deployed.post(IMPORT, json={"format": "xlsx", "document": "x"})
    assert bad_format.status_code == 422
    assert "body.format" in bad_format.text
    assert names(deployed) == []


def test_the_csv_result_cannot_run_formulas(deployed: TestClient) -> None:
    document = 'name,api_key\r\n"=HYPERLINK(""http://evil.example"")",generate\r\n@sum,\r\nok,\r\n'
    response = deployed.post(
        IMPORT,
        json={"format": "csv", "document": document},
        params={"partial": "true"},
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:3] == ["row", "name", "status"]
    by_row = {r[0]: r for r in rows[1:]}
    assert by_row["2"][1] == '\'=HYPERLINK("http://evil.example")'
    assert by_row["3"][1] == "'@sum"
    assert by_row["4"][1:3] == ["ok", "created"]
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell


def test_only_consumer_managers_import(deployed: TestClient, as_role: Any) -> None:
    body = {"format": "csv", "document": "name\r\nx\r\n"}
    for role in ("viewer", "api_manager", "deployer"):
        for params in ({}, {"dry_run": "true"}):
            denied = deployed.post(IMPORT, json=body, params=params, headers=as_role(role))
            assert denied.status_code == 403, role
    allowed = deployed.post(IMPORT, json=body, headers=as_role("security_officer"))
    assert allowed.status_code == 200, allowed.text
    assert names(deployed) == ["x"]
