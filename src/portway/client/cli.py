"""CLI commands that talk to the management API with a personal access token.

    portway api list|get|create     API proxies (create by hand or from an OpenAPI document)
    portway deploy / undeploy       one or several APIs to an environment (one revision)
    portway rollback                an API to an earlier API revision
    portway workers                 the worker registry
    portway export                  the declarative configuration (YAML)
    portway apply -f FILE           make the configuration equal to FILE (--dry-run, --prune)
    portway schema                  the JSON Schema of the declarative file
    portway consumers import FILE   consumers with credentials from CSV or JSON (--dry-run,
                                    --partial, --result FILE: the CSV with generated secrets)

Connection: ``--manager URL`` (or ``PORTWAY_MANAGER``; default the single-host profile's
http://127.0.0.1:8081) and ``--token`` (or ``PORTWAY_TOKEN``, or the file ``--token-file``,
default ``var/portway/admin.token``). Exit codes, as every ``portway`` command: 0 done, 1 refused
or failed (the reason on stderr; a deploy that at least one worker did not confirm is 1 too), 2
usage (an input file that cannot be read included).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from portway.client.management_client import ManagementAPIError, ManagerClient
from portway.client.output import as_json, as_yaml, short, table
from portway.config.management.catalog import ApiProxyView, ImportedApi
from portway.config.management.consumers import ImportedCredential
from portway.config.management.declarative import ApplyResult
from portway.config.management.deployments import Deployment
from portway.errors import UsageError

DEFAULT_MANAGER = "http://127.0.0.1:8081"
DEFAULT_TOKEN_FILE = Path("var/portway/admin.token")
PROJECT_HELP = "project of a NAME given without PROJECT/ (default: default)"
NOTE_HELP = "a note kept in the deployment record and audit log"

Handler = Callable[[argparse.Namespace, ManagerClient, TextIO], int]


def resolve_token(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """``--token``, else ``PORTWAY_TOKEN``, else the token file (if it exists)."""
    env = os.environ if environ is None else environ
    if args.token:
        token: str = args.token
        return token
    if env.get("PORTWAY_TOKEN"):
        return env["PORTWAY_TOKEN"]
    path = Path(args.token_file)
    if path.is_file():
        return path.read_text().strip() or None
    return None


def read_text(path: str) -> str:
    """A file named on the command line (``-``: standard input); ``UsageError`` when unreadable."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def read_document(path: str) -> Any:
    """A JSON or YAML file (``-`` reads standard input); ``UsageError`` when it cannot be read."""
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        token = resolve_token(args)
        out = sys.stdout
        try:
            with ManagerClient(args.manager, token) as client:
                return handler(args, client, out)
        except ManagementAPIError as exc:
            sys.stderr.write(f"portway: error: {exc}\n")
            if exc.status == 401 and token is None:
                sys.stderr.write(
                    "hint: give --token, set PORTWAY_TOKEN, or create "
                    f"{args.token_file} (the admin token from `portway up`)\n"
                )
            return 1

    return run


# api ---------------------------------------------------------------------------------------
def _api_list(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    rows = client.list_apis(
        project=args.project,
        name_contains=args.name_contains,
        environment=args.environment,
        redeploy_required=True if args.redeploy_required else None,
        limit=args.limit,
    )
    if args.output == "json":
        as_json(rows, out)
        return 0
    table(
        ["PROJECT", "NAME", "BASE PATH", "ENDPOINTS", "BACKENDS", "DEPLOYED"],
        [
            (
                r.project,
                r.name,
                r.base_path,
                r.endpoints,
                r.backends,
                ", ".join(
                    f"{d.environment}@{d.api_revision}"
                    + (" (redeploy required)" if d.redeploy_required else "")
                    for d in r.deployments
                ),
            )
            for r in rows
        ],
        out,
    )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _split(ref: str, project: str) -> tuple[str, str]:
    """``NAME`` or ``PROJECT/NAME``."""
    if "/" in ref:
        first, second = ref.split("/", 1)
        return first, second
    return project, ref


def _api_get(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    project, name = _split(args.name, args.project)
    api = client.get_api(project, name)
    if args.output == "json":
        as_json(api, out)
    else:
        as_yaml(api, out)
    return 0


def _api_create(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    created: ImportedApi | ApiProxyView
    if args.openapi:
        if not args.name:
            raise UsageError("--openapi needs --name")
        request: dict[str, Any] = {
            "name": args.name,
            "mock": args.mock,
            "examples": not args.no_examples,
        }
        if args.openapi.startswith(("http://", "https://")):
            request["url"] = args.openapi
        else:
            request["document"] = read_text(args.openapi)
        if args.base_path:
            request["base_path"] = args.base_path
        if args.backend:
            request["backends"] = [{"url": url} for url in args.backend]
        created = client.import_api(args.project, request, dry_run=args.dry_run)
    else:
        if not args.file:
            raise UsageError("give -f FILE (an API proxy) or --openapi DOCUMENT")
        body = read_document(args.file)
        if not isinstance(body, dict):
            raise UsageError(f"{args.file} must hold one API proxy object")
        created = client.create_api(str(body.get("project", args.project)), body)
    if args.output == "json":
        as_json(created, out)
        return 0
    verb = "would create" if args.dry_run else "created"
    out.write(
        f"{verb} {created.project}/{created.name} at {created.base_path} "
        f"with {len(created.endpoints)} endpoint(s)\n"
    )
    for warning in created.warnings if isinstance(created, ImportedApi) else []:
        out.write(f"warning: {warning}\n")
    return 0


# deployments -------------------------------------------------------------------------------
def _print_deployment(result: Deployment, out: TextIO, output: str) -> int:
    if output == "json":
        as_json(result, out)
    else:
        items = ", ".join(
            f"{i.project}/{i.api}" + (f"@{i.api_revision}" if i.api_revision else "")
            for i in result.items
        )
        out.write(
            f"{result.action} {items} -> {result.environment} revision {result.env_revision}\n"
        )
        table(
            ["WORKER", "ADDRESS", "RESULT", "SERVED", "SECONDS", "ERROR"],
            [
                (
                    r.worker,
                    r.address,
                    "ok" if r.success else "FAILED",
                    r.served_revision,
                    r.seconds,
                    r.error,
                )
                for r in result.results
            ],
            out,
        )
    return 0 if all(r.success for r in result.results) else 1


def _deploy(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    refs = [_split(ref, args.project) for ref in args.apis]
    action: str = args.deploy_action
    if len(refs) == 1:
        project, name = refs[0]
        result = client.deploy(args.env, project, name, action=action, note=args.note)
    else:
        items = [{"project": p, "api": n, "action": action} for p, n in refs]
        result = client.deploy_batch(args.env, items, args.note)
    return _print_deployment(result, out, args.output)


def _rollback(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    project, name = _split(args.api, args.project)
    result = client.deploy(
        args.env, project, name, action="rollback", api_revision=args.to, note=args.note
    )
    return _print_deployment(result, out, args.output)


def _workers(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    rows = client.workers(args.env)
    if args.output == "json":
        as_json(rows, out)
        return 0
    table(
        [
            "ID",
            "ENVIRONMENT",
            "STATE",
            "SERVED",
            "DESIRED",
            "IN SYNC",
            "HEALTHY",
            "LAST REPORT",
            "ADDRESS",
        ],
        [
            (
                r.id,
                r.environment,
                r.state,
                r.served_revision,
                r.desired_revision,
                r.in_sync,
                r.healthy,
                r.last_report,
                r.address,
            )
            for r in rows
        ],
        out,
    )
    return 0


# declarative -------------------------------------------------------------------------------
def _dump(value: Any, output: str, target: TextIO) -> None:
    if output == "json":
        as_json(value, target)
    else:
        as_yaml(value, target)


def _write(value: Any, args: argparse.Namespace, out: TextIO) -> None:
    if args.file in (None, "-"):
        _dump(value, args.output, out)
        return
    with Path(args.file).open("w") as handle:
        _dump(value, args.output, handle)


def _export(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    _write(client.export(), args, out)
    return 0


def print_plan(result: ApplyResult, out: TextIO) -> None:
    signs = {"create": "+", "update": "~", "delete": "-"}
    for change in result.changes:
        out.write(f"{signs[change.action]} {change.kind} {change.name}\n")
        if change.action == "update":
            for d in change.diff:
                out.write(f"    {d['field']}: {short(d.get('old'))} -> {short(d.get('new'))}\n")
    s = result.summary
    verb = "plan" if result.dry_run else "applied"
    out.write(
        f"{verb}: {s.create} to create, {s.update} to update, {s.delete} to delete, "
        f"{s.unchanged} unchanged\n"
    )
    for published in result.published:
        out.write(
            f"published consumers to {published.environment} revision {published.env_revision}\n"
        )


def _apply(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    document = read_document(args.file)
    if not isinstance(document, dict):
        raise UsageError(f"{args.file} must hold a mapping (the declarative file)")
    result = client.apply(document, dry_run=args.dry_run, prune=args.prune)
    if args.output == "json":
        as_json(result, out)
    else:
        print_plan(result, out)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from portway.config.declarative import declarative_json_schema
    from portway.config.platform_file import platform_json_schema

    schema = platform_json_schema() if args.which == "platform" else declarative_json_schema()
    if args.file in (None, "-"):
        as_json(schema, sys.stdout)
    else:
        with Path(args.file).open("w") as handle:
            as_json(schema, handle)
    return 0


# consumers ---------------------------------------------------------------------------------
def _consumer_import(args: argparse.Namespace, client: ManagerClient, out: TextIO) -> int:
    document = read_text(args.file)
    fmt = args.format or ("csv" if args.file.lower().endswith(".csv") else "json")
    if args.result:
        result_path = Path(args.result)
        try:  # the secrets are written once, readable by the owner only, never over a file
            handle = os.open(result_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise UsageError(f"{args.result}: {exc.strerror or exc}") from None
        try:
            text = client.import_consumers_csv(
                fmt, document, dry_run=args.dry_run, partial=args.partial
            )
        except BaseException:
            os.close(handle)
            result_path.unlink()
            raise
        with os.fdopen(handle, "w", newline="") as written:
            written.write(text)
        counts: dict[str, int] = {}
        seen: set[str] = set()
        for line in csv.DictReader(io.StringIO(text)):
            if line["row"] not in seen:
                seen.add(line["row"])
                counts[line["status"]] = counts.get(line["status"], 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        out.write(f"{'plan' if args.dry_run else 'imported'}: {summary}; result in {args.result}\n")
        return 0 if "failed" not in counts else 1
    result = client.import_consumers(fmt, document, dry_run=args.dry_run, partial=args.partial)
    if args.output == "json":
        as_json(result, out)
    else:
        rows = []
        for row in result.rows:
            errors = "; ".join(f"{e.field}: {e.message}" for e in row.errors)
            credentials: list[ImportedCredential | None] = [*row.credentials] or [None]
            for cred in credentials:
                rows.append(
                    [
                        row.row,
                        row.name or "",
                        row.status,
                        cred.kind if cred else "",
                        (cred.username or cred.client_id or "") if cred else "",
                        (cred.secret or "") if cred else "",
                        errors,
                    ]
                )
        table(
            ["ROW", "NAME", "STATUS", "CREDENTIAL", "ID", "SECRET (SHOWN ONCE)", "ERRORS"],
            rows,
            out,
        )
        c = result.counts
        verb = "plan" if result.dry_run else "imported"
        out.write(
            f"{verb}: {c.created} created, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.failed} failed\n"
        )
    return 0 if result.counts.failed == 0 else 1


# registration ------------------------------------------------------------------------------
def _connection(outputs: Sequence[str] = ("table", "json")) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--manager",
        default=os.environ.get("PORTWAY_MANAGER", DEFAULT_MANAGER),
        help=f"manager URL (env PORTWAY_MANAGER; default {DEFAULT_MANAGER})",
    )
    common.add_argument("--token", default=None, help="personal access token (env PORTWAY_TOKEN)")
    common.add_argument(
        "--token-file",
        default=str(DEFAULT_TOKEN_FILE),
        help=f"read the token from this file (default {DEFAULT_TOKEN_FILE})",
    )
    common.add_argument(
        "--output",
        choices=list(outputs),
        default=outputs[0],
        help=f"what to print: {' or '.join(outputs)} (default {outputs[0]})",
    )
    return common


def register(subparsers: Any) -> None:
    """Add the management commands to the ``portway`` parser's subcommands."""
    common = _connection()
    documents = _connection(("yaml", "json"))

    api = subparsers.add_parser("api", help="API proxies: list, get, create")
    api_sub = api.add_subparsers(dest="api_command", required=True, metavar="ACTION")
    listing = api_sub.add_parser("list", parents=[common], help="list API proxies")
    listing.add_argument("--project", default=None, help="only this project's (default: all)")
    listing.add_argument("--name-contains", default=None, help="only names containing this text")
    listing.add_argument("--environment", default=None, help="deployed to this environment")
    listing.add_argument(
        "--redeploy-required",
        action="store_true",
        help="only APIs deployed with global policies that changed since",
    )
    listing.add_argument(
        "--limit",
        type=_positive,
        default=None,
        help="list at most this many (default: all, read a page at a time)",
    )
    listing.set_defaults(func=_run(_api_list))

    get = api_sub.add_parser("get", parents=[documents], help="show one API proxy")
    get.add_argument("name", help="NAME or PROJECT/NAME")
    get.add_argument("--project", default="default", help=PROJECT_HELP)
    get.set_defaults(func=_run(_api_get))

    create = api_sub.add_parser(
        "create", parents=[common], help="create an API proxy from a file or an OpenAPI document"
    )
    create.add_argument("-f", "--file", help="an API proxy as YAML or JSON")
    create.add_argument("--openapi", help="an OpenAPI 3.x / Swagger 2.0 file or URL to import")
    create.add_argument("--name", help="name of the imported API proxy")
    create.add_argument("--project", default="default", help=PROJECT_HELP)
    create.add_argument(
        "--base-path", default=None, help="client path prefix (import; default from the document)"
    )
    create.add_argument("--backend", action="append", default=[], help="backend URL (repeatable)")
    create.add_argument("--mock", action="store_true", help="answer with the document's examples")
    create.add_argument(
        "--no-examples",
        action="store_true",
        help="import the routes without the example responses (a very large document then "
        "fits one API proxy; not with --mock)",
    )
    create.add_argument("--dry-run", action="store_true", help="validate only (import)")
    create.set_defaults(func=_run(_api_create))

    for command, help_text in (
        ("deploy", "deploy (or redeploy) APIs to an environment, as one revision"),
        ("undeploy", "remove APIs from an environment"),
    ):
        deploy = subparsers.add_parser(command, parents=[common], help=help_text)
        deploy.add_argument("apis", nargs="+", metavar="API", help="NAME or PROJECT/NAME")
        deploy.add_argument("--env", required=True, help="environment")
        deploy.add_argument("--project", default="default", help=PROJECT_HELP)
        deploy.add_argument("--note", default="", help=NOTE_HELP)
        deploy.set_defaults(func=_run(_deploy), deploy_action=command)

    rollback = subparsers.add_parser(
        "rollback", parents=[common], help="deploy an earlier revision of an API"
    )
    rollback.add_argument("api", help="NAME or PROJECT/NAME")
    rollback.add_argument("--env", required=True, help="environment")
    rollback.add_argument("--to", type=int, required=True, help="the API revision to deploy")
    rollback.add_argument("--project", default="default", help=PROJECT_HELP)
    rollback.add_argument("--note", default="", help=NOTE_HELP)
    rollback.set_defaults(func=_run(_rollback))

    workers = subparsers.add_parser("workers", parents=[common], help="the worker registry")
    workers.add_argument("--env", default=None, help="only this environment's (default: all)")
    workers.set_defaults(func=_run(_workers))

    export = subparsers.add_parser(
        "export", parents=[documents], help="print the declarative configuration"
    )
    export.add_argument("-f", "--file", default=None, help="write here instead of stdout")
    export.set_defaults(func=_run(_export))

    apply = subparsers.add_parser(
        "apply", parents=[common], help="make the configuration equal to a declarative file"
    )
    apply.add_argument("-f", "--file", required=True, help="YAML or JSON file ('-' = stdin)")
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument(
        "--prune", action="store_true", help="delete what the file's sections do not list"
    )
    apply.set_defaults(func=_run(_apply))

    consumers = subparsers.add_parser("consumers", help="consumers: import")
    consumers_sub = consumers.add_subparsers(
        dest="consumers_command", required=True, metavar="ACTION"
    )
    importing = consumers_sub.add_parser(
        "import",
        parents=[common],
        help="create or update consumers and their credentials from a CSV or JSON file",
    )
    importing.add_argument("file", help="the CSV or JSON file ('-' = stdin)")
    importing.add_argument(
        "--format", choices=("csv", "json"), default=None, help="default: by the file's suffix"
    )
    importing.add_argument("--dry-run", action="store_true", help="check and report only")
    importing.add_argument(
        "--partial", action="store_true", help="store the rows without errors despite others"
    )
    importing.add_argument(
        "--result",
        default=None,
        help="write the result as CSV here (a new file, mode 0600): generated keys and secrets "
        "are in it and shown nowhere else",
    )
    importing.set_defaults(func=_run(_consumer_import))

    schema = subparsers.add_parser(
        "schema", help="print the JSON Schema of the declarative file or of portway.yaml"
    )
    schema.add_argument(
        "which",
        nargs="?",
        choices=("declarative", "platform"),
        default="declarative",
        help="declarative (portway apply files, the default) or platform (portway.yaml)",
    )
    schema.add_argument("-f", "--file", default=None, help="write here instead of stdout")
    schema.set_defaults(func=_schema)
