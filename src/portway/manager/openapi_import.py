"""Create an API proxy from an OpenAPI 3.x or Swagger 2.0 document (JSON or YAML, body or URL).

Each operation becomes an endpoint (path + method) whose request list holds a ``mock_response``
policy with the operation's example response (first 2xx, else ``default``); the policies are active
when the import asks for a mock, inactive otherwise, so routing can be switched off later by
activating them. Backends come from the request or from the document's servers (``servers[0]`` /
``schemes``+``host``+``basePath``). Only local ``$ref``s are followed; anything the import cannot
use is reported in ``warnings`` rather than failing the import.

Fetching a URL is bounded (size, time, no redirects) and, unless the manager allows it, refuses
internal addresses (``addresses.is_private``), so the import cannot be used to read internal
services; the connection goes to the address that was checked (no second DNS resolution).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import Field, ValidationError, model_validator

from portway.config.base import Model, Slug
from portway.config.models import ApiProxy, Backend
from portway.errors import ConfigError
from portway.manager import addresses

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_ENDPOINTS = 2000
MAX_EXAMPLE_BYTES = 1 << 20
_PARAM = re.compile(r"^\{([^{}]+)\}$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]*$")


class ImportTarget(Model):
    """What every import names: the proxy to create and where its document is fetched."""

    name: Slug
    description: Annotated[str | None, Field(max_length=1000)] = None
    base_path: Annotated[
        str | None, Field(max_length=2000, description="client path prefix; default /NAME")
    ] = None
    backends: Annotated[
        list[Backend] | None,
        Field(
            description="default: from the document (OpenAPI: its first server; WSDL: the "
            "port's soap:address)"
        ),
    ] = None
    url: Annotated[
        str | None,
        Field(max_length=2000, pattern=r"^https?://", description="fetch the document here"),
    ] = None


class ImportRequest(ImportTarget):
    """Where the document comes from and how to turn it into a proxy."""

    document: Annotated[
        str | dict[str, Any] | None,
        Field(description="the document itself: a JSON object, or the text of a JSON/YAML file"),
    ] = None
    mock: Annotated[
        bool, Field(description="answer with the examples instead of calling backends")
    ] = False
    examples: Annotated[
        bool,
        Field(
            description="keep each operation's example response (as an inactive mock policy "
            "unless mock); false stores the routes only, so a very large document still fits "
            "one API proxy"
        ),
    ] = True

    @model_validator(mode="after")
    def _one_source(self) -> ImportRequest:
        if (self.url is None) == (self.document is None):
            raise ValueError("give exactly one of url and document")
        if self.mock and not self.examples:
            raise ValueError("mock answers with the examples: it needs examples true")
        return self


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases: an alias bomb cannot expand into gigabytes later."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not supported in imported documents")
        return super().compose_node(parent, index)


def parse_document(
    raw: str | bytes | Mapping[str, Any], field: str = "body.document"
) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        loaded = json.loads(text)
    except ValueError:
        try:
            loaded = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ConfigError(f"neither JSON nor YAML: {exc}"[:500], field) from None
    if not isinstance(loaded, dict):
        raise ConfigError("the document must be a JSON/YAML object", field)
    return loaded


def too_large(max_bytes: int, field: str) -> ConfigError:
    """The refusal of a document above the import cap, naming the setting that raises it."""
    return ConfigError(
        f"the document is larger than {max_bytes} bytes, the manager's import cap "
        "(setting manager.import_max_bytes, `portway manager --import-max-bytes N`)",
        field,
    )


async def fetch_document(
    url: str,
    *,
    max_bytes: int,
    seconds: float,
    allow_private: bool,
    allowed: Sequence[addresses.IPNetwork] = (),
) -> bytes:
    """GET ``url`` with a size limit and a timeout; ``ConfigError`` on ``body.url`` otherwise.

    The host name is resolved once; the connection goes to the address that was checked (with the
    name as ``Host`` and TLS server name), so a second DNS answer cannot redirect it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("must be an http(s) URL with a host", "body.url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError("the port is not a number in 1..65535", "body.url") from None
    try:
        found = await addresses.resolve(parts.hostname, port)
    except (OSError, UnicodeError):
        raise ConfigError(f"cannot resolve {parts.hostname}", "body.url") from None
    if not found:
        raise ConfigError(f"cannot resolve {parts.hostname}", "body.url")
    if not allow_private and any(addresses.is_private(a, allowed) for a in found):
        raise ConfigError(
            f"{parts.hostname} resolves to a non-public address; the manager does not fetch "
            "from internal networks (setting import_allow_private_hosts)",
            "body.url",
        )
    address = found[0].split("%", 1)[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
    host_header = parts.netloc.rsplit("@", 1)[-1]
    try:
        async with (
            httpx.AsyncClient(timeout=seconds, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET",
                pinned,
                headers={"Accept": "application/json, application/yaml, */*", "Host": host_header},
                extensions={"sni_hostname": parts.hostname},
            ) as response,
        ):
            if response.status_code != 200:
                raise ConfigError(f"the URL answered {response.status_code}", "body.url")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise too_large(max_bytes, "body.url")
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise too_large(max_bytes, "body.url")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot fetch the document: {type(exc).__name__}", "body.url") from None
    return b"".join(chunks)


class _Resolver:
    def __init__(self, root: Mapping[str, Any], warnings: list[str]) -> None:
        self.root = root
        self.warnings = warnings

    def deref(self, node: Any, depth: int = 0) -> Any:
        """Follow a local ``$ref`` chain (``#/a/b``); anything else is returned as it is."""
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref: str = node["$ref"]
            if depth > 20:
                self.warnings.append(f"$ref chain too deep at {ref}")
                return None
            if not ref.startswith("#/"):
                self.warnings.append(f"external $ref {ref} is not followed")
                return None
            target: Any = self.root
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    self.warnings.append(f"$ref {ref} does not resolve")
                    return None
                target = target[part]
            node = target
            depth += 1
        return node


def _version(doc: Mapping[str, Any]) -> int:
    if str(doc.get("swagger", "")).startswith("2"):
        return 2
    if str(doc.get("openapi", "")).startswith("3"):
        return 3
    raise ConfigError(
        "not an OpenAPI 3.x or Swagger 2.0 document (no 'openapi: 3...' or 'swagger: \"2.0\"')",
        "body.document",
    )


def _servers(doc: Mapping[str, Any], version: int, warnings: list[str]) -> list[Backend]:
    urls: list[str] = []
    if version == 3:
        for server in doc.get("servers") or []:
            if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
                continue
            url: str = server["url"]
            for name, var in (server.get("variables") or {}).items():
                if isinstance(var, Mapping) and "default" in var:
                    url = url.replace("{" + str(name) + "}", str(var["default"]))
            urls.append(url)
    else:
        host = doc.get("host")
        if isinstance(host, str) and host:
            schemes = [s for s in doc.get("schemes") or ["https"] if s in ("http", "https")]
            scheme = "https" if "https" in schemes else (schemes[0] if schemes else "https")
            urls.append(f"{scheme}://{host}{doc.get('basePath') or ''}")
    backends = []
    for url in urls[:1]:
        try:
            backends.append(Backend(url=url))
        except ValidationError:
            warnings.append(f"server {url!r} is not an absolute http(s) URL; give backends")
    return backends


def _clean_path(path: str, warnings: list[str]) -> str | None:
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/")
    segments = []
    for segment in path.split("/")[1:]:
        found = _PARAM.match(segment)
        if found:
            name = re.sub(r"\W", "_", found.group(1))
            if not re.match(r"^[A-Za-z_]", name):
                name = "p_" + name
            segments.append("{" + name + "}")
        elif _LITERAL.match(segment) and segment not in (".", ".."):
            segments.append(segment)
        else:
            warnings.append(f"path {path} has a segment the gateway cannot route: skipped")
            return None
    return "/" + "/".join(segments)


def _pick_response(responses: Mapping[str, Any]) -> tuple[int, str] | None:
    codes = [str(c) for c in responses]
    success = sorted(c for c in codes if c.isdigit() and c.startswith("2"))
    if success:
        return int(success[0]), success[0]
    if "default" in responses:
        return 200, "default"
    numeric = sorted(c for c in codes if c.isdigit() and 100 <= int(c) <= 599)
    return (int(numeric[0]), numeric[0]) if numeric else None


def _example(
    resolver: _Resolver, response: Mapping[str, Any], version: int, produces: list[str]
) -> tuple[Any, str | None, bool]:
    """(example, media type, found) of one response object."""
    if version == 3:
        content = response.get("content") or {}
        if not isinstance(content, Mapping) or not content:
            return None, None, False
        types = list(content)
        media_type = next((t for t in types if "json" in t), types[0])
        media = resolver.deref(content[media_type]) or {}
        if not isinstance(media, Mapping):
            return None, media_type, False
        if "example" in media:
            return media["example"], media_type, True
        examples = media.get("examples")
        if isinstance(examples, Mapping) and examples:
            first = resolver.deref(next(iter(examples.values())))
            if isinstance(first, Mapping) and "value" in first:
                return first["value"], media_type, True
        schema = resolver.deref(media.get("schema"))
        if isinstance(schema, Mapping) and "example" in schema:
            return schema["example"], media_type, True
        return None, media_type, False
    examples = response.get("examples")
    if isinstance(examples, Mapping) and examples:
        media_type = next((t for t in examples if "json" in t), next(iter(examples)))
        return examples[media_type], media_type, True
    schema = resolver.deref(response.get("schema"))
    media_type = next((t for t in produces if "json" in t), produces[0] if produces else None)
    if isinstance(schema, Mapping) and "example" in schema:
        return schema["example"], media_type or "application/json", True
    return None, media_type, False


def _mock_policy(
    status: int, example: Any, media_type: str | None, found: bool, active: bool
) -> dict[str, Any] | None:
    config: dict[str, Any] = {"status": status}
    if found:
        if isinstance(example, str) and not (media_type and "json" in media_type):
            config["body"] = example
        else:
            config["json_body"] = example
        if media_type:
            config["content_type"] = media_type
        if len(json.dumps(config, default=str)) > MAX_EXAMPLE_BYTES:
            return None
    return {
        "name": "mock",
        "type": "mock_response",
        "description": "example response from the imported document",
        "active": active,
        "config": json.loads(json.dumps(config, default=str)),
    }


def build_api(
    doc: Mapping[str, Any], request: ImportRequest, project: str
) -> tuple[ApiProxy, list[str]]:
    """The API proxy described by ``doc``; ``ConfigError`` / ``ValidationError`` when unusable."""
    warnings: list[str] = []
    version = _version(doc)
    resolver = _Resolver(doc, warnings)
    info = doc.get("info") if isinstance(doc.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    produces = [str(p) for p in doc.get("produces") or []] if version == 2 else []
    paths = doc.get("paths") or {}
    if not isinstance(paths, Mapping):
        raise ConfigError("paths must be an object", "body.document.paths")
    endpoints: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for raw_path, item in paths.items():
        item = resolver.deref(item)
        if not isinstance(item, Mapping) or not str(raw_path).startswith("/"):
            continue
        path = _clean_path(str(raw_path), warnings)
        if path is None:
            continue
        for method in METHODS:
            operation = resolver.deref(item.get(method))
            if not isinstance(operation, Mapping):
                continue
            if (path, method) in seen:
                warnings.append(f"{method.upper()} {path} appears twice: the first one is kept")
                continue
            seen.add((path, method))
            summary = str(operation.get("summary") or operation.get("operationId") or "")
            endpoint: dict[str, Any] = {
                "path": path,
                "methods": [method.upper()],
                "description": summary[:1000],
            }
            raw_responses = operation.get("responses")
            # YAML reads an unquoted `200:` as an integer key
            responses = (
                {str(k): v for k, v in raw_responses.items()}
                if isinstance(raw_responses, Mapping)
                else {}
            )
            picked = _pick_response(responses) if request.examples else None
            if picked is not None:
                status, code = picked
                response = resolver.deref(responses[code])
                if isinstance(response, Mapping):
                    op_produces = [str(p) for p in operation.get("produces") or produces]
                    example, media_type, found = _example(resolver, response, version, op_produces)
                    mock = _mock_policy(status, example, media_type, found, request.mock)
                    if mock is None:
                        warnings.append(f"{method.upper()} {path}: example larger than 1 MiB")
                    else:
                        endpoint["policies"] = {"request": [mock]}
            endpoints.append(endpoint)
    if len(endpoints) > MAX_ENDPOINTS:
        raise ConfigError(
            f"{len(endpoints)} operations; at most {MAX_ENDPOINTS} per API proxy",
            "body.document.paths",
        )
    backends = request.backends
    if backends is None:
        backends = _servers(doc, version, warnings)
    if not backends:
        raise ConfigError(
            "the document names no absolute server URL; give backends", "body.backends"
        )
    description = request.description
    if description is None:
        description = str(info.get("title") or "")
        if info.get("version"):
            description += f" {info['version']}"
    api = ApiProxy.model_validate(
        {
            "name": request.name,
            "project": project,
            "description": description.strip()[:1000],
            "base_path": request.base_path or f"/{request.name}",
            "backends": [b.model_dump(mode="json") for b in backends],
            "endpoints": endpoints,
        }
    )
    return api, warnings
