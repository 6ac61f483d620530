"""Bulk import of consumers with their credentials from a CSV or JSON document.

Rows are keyed by consumer name: a new name creates the consumer, a known one is updated with the
fields the row gives (fields it leaves out keep their stored value), and a row that changes
nothing is ``unchanged`` — importing the same file twice changes nothing the second time.
Credentials are keyed too: an API key given in the file by its hash, a generated one by its label,
a basic credential by its username and an API client by its client_id (or, generated, its label);
a credential that already exists for the consumer is ``unchanged`` (a basic password in the file
does not replace a stored one). Generated keys, passwords and client secrets appear once, in the
answer, and are stored hashed like any other credential.

Every row is checked before anything is stored. When a row fails, nothing is stored (422 naming
each row and field) unless ``partial`` is set, which stores the rows that passed. ``dry_run``
checks and reports what would happen, storing nothing and generating no secret.

CSV columns: ``name`` (required), ``description``, ``email``, ``disabled`` (true/false),
``roles`` and ``ip_allow`` (``;``-separated), ``metadata.KEY`` (one column per key), ``api_key``
(``generate`` or the key itself) with ``api_key_label``, ``basic_username`` with
``basic_password`` (generated when empty), ``client`` (``generate`` or the client_id) with
``client_label``. An empty cell leaves the field alone. Rows are numbered as a spreadsheet shows
them (the header is row 1); JSON rows by their position from 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from portway.config.base import Model
from portway.config.declarative import ConsumerSpec
from portway.config.revision import api_key_lookup
from portway.errors import ConfigError
from portway.manager import audit
from portway.manager.consumers import (
    DEFAULT_DIGEST_REALM,
    Consumers,
    CredentialCreate,
    _spec,
    credential_view,
)
from portway.manager.problems import ApiError
from portway.policies.digest_auth import digest_lookup
from portway.stores.config_store import Document

MAX_ROWS = 1000
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024
MAX_CREDENTIALS_PER_ROW = 20
GENERATE = "generate"
DEFAULT_LABEL = "import"
_LIST_COLUMNS = ("roles", "ip_allow")
_SCALAR_COLUMNS = ("name", "description", "email", "disabled")
_CREDENTIAL_COLUMNS = (
    "api_key",
    "api_key_label",
    "basic_username",
    "basic_password",
    "client",
    "client_label",
)


class ImportRequest(Model):
    format: Annotated[Literal["csv", "json"], Field(description="how document is written")]
    document: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_DOCUMENT_CHARS,
            description='the file: CSV with a header row, or JSON {"consumers": [...]}',
        ),
    ]


class ImportRow(ConsumerSpec):
    """One consumer of a JSON import: its fields and the credentials it should have."""

    credentials: Annotated[list[CredentialCreate], Field(max_length=MAX_CREDENTIALS_PER_ROW)] = (
        Field(default_factory=list)
    )


@dataclass
class RowResult:
    row: int
    name: str | None
    status: str = "unchanged"
    errors: list[dict[str, str]] = field(default_factory=list)
    credentials: list[dict[str, Any]] = field(default_factory=list)
    spec: ImportRow | None = None
    new_data: ConsumerSpec | None = None
    to_create: list[CredentialCreate] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.errors.append({"field": where, "message": message})
        self.status = "failed"

    def answer(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "name": self.name,
            "status": self.status,
            "errors": self.errors,
            "credentials": self.credentials,
        }


# parsing -----------------------------------------------------------------------------------
def _cells(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as an ImportRow document (empty cells left out)."""
    out: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for column, raw in row.items():
        value = (raw or "").strip()
        if not value:
            continue
        if column in _LIST_COLUMNS:
            out[column] = [v.strip() for v in value.split(";") if v.strip()]
        elif column == "disabled":
            lowered = value.lower()
            out[column] = {"true": True, "false": False}.get(lowered, value)
        elif column.startswith("metadata."):
            metadata[column.removeprefix("metadata.")] = value
        elif column in _SCALAR_COLUMNS:
            out[column] = value
    if metadata:
        out["metadata"] = metadata
    credentials: list[dict[str, Any]] = []
    key = (row.get("api_key") or "").strip()
    if key:
        label = (row.get("api_key_label") or "").strip() or DEFAULT_LABEL
        credentials.append(
            {"kind": "api_key", "label": label} | ({} if key == GENERATE else {"key": key})
        )
    username = (row.get("basic_username") or "").strip()
    if username:
        password = row.get("basic_password") or ""
        credentials.append(
            {"kind": "basic", "username": username} | ({"password": password} if password else {})
        )
    client = (row.get("client") or "").strip()
    if client:
        label = (row.get("client_label") or "").strip() or DEFAULT_LABEL
        credentials.append(
            {"kind": "client", "label": label}
            | ({} if client == GENERATE else {"client_id": client})
        )
    if credentials:
        out["credentials"] = credentials
    return out


def _csv_rows(document: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(document, newline=""), strict=True)
    try:
        columns = reader.fieldnames or []
        known = (*_SCALAR_COLUMNS, *_LIST_COLUMNS, *_CREDENTIAL_COLUMNS)
        for column in columns:
            if column not in known and not column.startswith("metadata."):
                raise ConfigError(
                    f"unknown column {column[:100]!r} (known: {', '.join(known)}, metadata.KEY)",
                    "body.document",
                )
        if "name" not in columns:
            raise ConfigError("the header row needs a name column", "body.document")
        if len(set(columns)) != len(columns):
            raise ConfigError("a column appears twice in the header row", "body.document")
        rows: list[tuple[int, dict[str, Any]]] = []
        for number, row in enumerate(reader, 2):
            if len(rows) == MAX_ROWS:
                raise ConfigError(f"at most {MAX_ROWS} rows", "body.document")
            if None in row:
                raise ConfigError(f"row {number} has more cells than the header", "body.document")
            rows.append((number, _cells(dict(row))))
    except csv.Error as exc:
        raise ConfigError(
            f"not valid CSV at line {reader.line_num}: {exc}", "body.document"
        ) from None
    return rows


def _json_rows(document: str) -> list[tuple[int, Any]]:
    try:
        value = json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"not valid JSON: {str(exc)[:200]}", "body.document") from None
    items = value.get("consumers") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise ConfigError('expected {"consumers": [...]}', "body.document")
    if len(items) > MAX_ROWS:
        raise ConfigError(f"at most {MAX_ROWS} rows", "body.document")
    return list(enumerate(items, 1))


def parse(request: ImportRequest) -> list[RowResult]:
    """Each row checked on its own (types, formats, bounds); errors name the row and field."""
    raw: list[tuple[int, Any]] = []
    raw += _csv_rows(request.document) if request.format == "csv" else _json_rows(request.document)
    if not raw:
        raise ConfigError("no rows to import", "body.document")
    results = []
    for number, data in raw:
        name = data.get("name") if isinstance(data, dict) else None
        result = RowResult(number, name if isinstance(name, str) else None)
        if not isinstance(data, dict):
            result.fail("row", "each consumer is a JSON object")
            results.append(result)
            continue
        try:
            result.spec = ImportRow.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err.get("loc", ())) or "row"
                result.fail(where, str(err.get("msg", "invalid")))
        results.append(result)
    return results


# planning and applying ----------------------------------------------------------------------
def _identity(body: CredentialCreate) -> tuple[str, str]:
    """What makes a credential of the file the same as a stored one."""
    if body.kind == "api_key":
        return ("key", api_key_lookup(body.key)) if body.key else ("api_key_label", body.label)
    if body.kind == "basic":
        return "lookup", str(body.username)
    if body.kind == "digest":
        return "lookup", digest_lookup(str(body.username), body.realm or DEFAULT_DIGEST_REALM)
    return ("lookup", body.client_id) if body.client_id else ("client_label", body.label)


def _stored_identity(doc: Document) -> Iterable[tuple[str, str]]:
    data = doc.data
    yield "lookup", str(data["lookup"])
    if data["kind"] == "api_key":
        yield "key", str(data["lookup"])
        if not data.get("replaced_by"):
            yield "api_key_label", str(data.get("label", ""))
    if data["kind"] == "client":
        yield "client_label", str(data.get("label", ""))


async def plan(consumers: Consumers, rows: list[RowResult]) -> None:
    """Decide each row's status against the store; cross-row and stored conflicts fail the row."""
    existing = {str(d.data["name"]): d for d in await consumers.all()}
    credentials = await consumers.store.find("credentials")
    owner_of: dict[tuple[str, str], str] = {}  # identity -> consumer id
    for doc in credentials:
        for identity in _stored_identity(doc):
            if identity[0] in ("lookup", "key"):
                owner_of[identity] = str(doc.data["consumer_id"])
    per_consumer: dict[str, set[tuple[str, str]]] = {}
    for doc in credentials:
        per_consumer.setdefault(str(doc.data["consumer_id"]), set()).update(_stored_identity(doc))
    apis = {d.id for d in await consumers.store.find("apis")}
    environments = {d.id for d in await consumers.store.find("environments")}
    seen_names: dict[str, int] = {}
    seen_lookups: dict[str, int] = {}
    for row in rows:
        spec = row.spec
        if spec is None:
            continue
        if spec.name in seen_names:
            row.fail("name", f"{spec.name!r} is also in row {seen_names[spec.name]}")
            continue
        seen_names[spec.name] = row.row
        old = existing.get(spec.name)
        given = spec.model_dump(mode="json", include=spec.model_fields_set - {"credentials"})
        try:
            merged = ConsumerSpec.model_validate(given if old is None else _spec(old) | given)
        except ValidationError as exc:
            for err in exc.errors():
                row.fail(".".join(str(p) for p in err.get("loc", ())) or "row", err["msg"])
            continue
        if old is None:
            row.status = "created"
        elif merged != ConsumerSpec.model_validate(_spec(old)):
            row.status = "updated"
        try:
            await consumers.check_grants(
                merged.grants, "grants", apis=apis, environments=environments
            )
        except ConfigError as exc:
            row.fail(exc.field or "grants", exc.message)
            continue
        row.new_data = merged
        have = per_consumer.get(old.id, set()) if old is not None else set()
        for index, body in enumerate(spec.credentials):
            identity = _identity(body)
            where = f"credentials[{index}]"
            if identity in have:
                row.credentials.append({"kind": body.kind, "status": "unchanged"})
                continue
            taken = owner_of.get(identity) or owner_of.get(("lookup", identity[1]))
            if identity[0] in ("lookup", "key") and taken is not None:
                what = {"api_key": "key", "client": "client_id"}.get(body.kind, "username")
                row.fail(f"{where}.{what}", f"this {what} is already in use by another consumer")
                continue
            if identity[0] in ("lookup", "key"):
                if identity[1] in seen_lookups:
                    row.fail(
                        f"{where}",
                        f"the same credential is also in row {seen_lookups[identity[1]]}",
                    )
                    continue
                seen_lookups[identity[1]] = row.row
            row.to_create.append(body)
            row.credentials.append({"kind": body.kind, "status": "created", "secret": None})
            if row.status == "unchanged":
                row.status = "updated"
        if row.errors:
            row.to_create = []


async def apply(consumers: Consumers, rows: list[RowResult], actor: str) -> None:
    for row in rows:
        if row.status == "failed" or row.new_data is None:
            continue
        spec = row.new_data
        if row.status == "created":
            await consumers.create(spec, actor, check=False)
        elif row.status == "updated":
            await consumers.replace(spec.name, spec, None, actor, check=False)
        shown: list[dict[str, Any]] = []
        created = iter(row.to_create)
        for entry in row.credentials:
            if entry["status"] != "created":
                shown.append(entry)
                continue
            body = next(created)
            doc, secret = await consumers.add_credential(spec.name, body, actor)
            view = credential_view(doc)
            given = body.key is not None or body.password is not None
            shown.append(
                {
                    "kind": view["kind"],
                    "status": "created",
                    "id": view["id"],
                    "label": view["label"],
                    "key_prefix": view["key_prefix"],
                    "username": view["username"],
                    "client_id": view["client_id"],
                    "secret": None if given else secret,
                }
            )
        row.credentials = shown


def summary(rows: list[RowResult]) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
    for row in rows:
        counts[row.status] += 1
    return counts


async def run(
    consumers: Consumers,
    request: ImportRequest,
    actor: str,
    *,
    dry_run: bool,
    partial: bool,
) -> dict[str, Any]:
    """Parse, check and (unless ``dry_run``) store; the answer lists every row."""
    rows = parse(request)
    await plan(consumers, rows)
    failed = [r for r in rows if r.status == "failed"]
    if failed and not partial and not dry_run:
        details = [
            {"field": f"rows[{r.row}].{e['field']}", "message": e["message"]}
            for r in failed
            for e in r.errors
        ]
        raise ApiError(
            422,
            "validation_error",
            f"{len(failed)} of {len(rows)} rows have errors; nothing was stored "
            "(partial=true stores the rows without errors)",
            details[0]["field"],
            details=details,
        )
    if not dry_run:
        await apply(consumers, rows, actor)
        counts = summary(rows)
        await audit.record(
            consumers.store, actor, "consumer.import", "consumers", None, {"rows": counts}
        )
    return {
        "dry_run": dry_run,
        "counts": summary(rows),
        "rows": [r.answer() for r in rows],
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def result_csv(answer: dict[str, Any]) -> str:
    """The answer as a CSV file: one line per credential (or per row without one)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        ["row", "name", "status", "credential", "credential_status", "id", "username",
         "client_id", "secret", "errors"]
    )  # fmt: skip
    for row in answer["rows"]:
        errors = "; ".join(f"{e['field']}: {e['message']}" for e in row["errors"])
        base = [row["row"], row["name"], row["status"]]
        for cred in row["credentials"] or [{}]:
            writer.writerow(
                safe_cell(v)
                for v in [
                    *base,
                    cred.get("kind"),
                    cred.get("status"),
                    cred.get("id"),
                    cred.get("username"),
                    cred.get("client_id"),
                    cred.get("secret"),
                    errors,
                ]
            )
    return out.getvalue()
