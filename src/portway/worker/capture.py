"""Headers, query and bodies in traffic records (``ApiProxy.capture``), masked in the worker.

``CaptureRules`` is compiled once per API and runtime. Whatever the rules say, credentials are
masked: the ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` and
``X-Api-Key`` headers, the header or query parameter an ``api_key`` policy of the API reads, and
query (or form) parameters named like keys and tokens. Header names compare case-insensitively,
every occurrence of a repeated header is masked, query parameter names are compared after
percent-decoding. The target sent to the backend (``backend_path``) always has its query masked.

Bodies are kept up to ``max_body_bytes`` (``truncated`` beyond), as ``text`` (UTF-8) or ``base64``.
With JSONPath or ElementPath rules a JSON or XML body is parsed and its matches masked; a body that
cannot be parsed whole (cut by the cap, malformed) is then left out rather than kept unmasked. An
API capturing a request body has its request bodies read whole before the backend call (up to the
worker's ``max_body_bytes``, 413 beyond, as when a policy reads it). Response bodies are captured
when the worker holds them whole (they had arrived when the backend's headers were read, or a
policy read them); a response streamed through is noted as ``{"omitted": "streamed"}``."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from portway.config.capture import Capture, RegionCapture
from portway.config.models import ApiProxy, PolicyLists
from portway.policies.jsonpath import JsonPath, compile_jsonpath
from portway.policies.xmlsafe import ElementPath, XmlRejected, compile_element_path, parse_xml

MASK = "****"
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
CREDENTIAL_QUERY = frozenset(
    {
        "apikey",
        "api_key",
        "api-key",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "signature",
        "sig",
    }
)
_FORM = "application/x-www-form-urlencoded"


def _api_key_names(lists: Iterable[PolicyLists]) -> tuple[set[str], set[str]]:
    """The header and query names ``api_key`` policies read (their ``key_name`` or default)."""
    headers: set[str] = set()
    query: set[str] = set()
    for policies in lists:
        for spec in (*policies.request, *policies.response, *policies.error):
            if spec.type != "api_key":
                continue
            location = spec.config.get("location", "header")
            name = spec.config.get("key_name")
            if location == "query":
                query.add(str(name or "apikey").lower())
            else:
                headers.add(str(name or "X-Api-Key").lower())
    return headers, query


MIN_SECRET = 4
"""Shorter masked values are not searched for in bodies (they would mask ordinary text)."""


def _remember(value: str, secrets: set[str]) -> None:
    """A masked value and, for ``Scheme credentials`` forms (``Bearer …``), the credentials."""
    for candidate in (value, value.partition(" ")[2].strip()):
        if len(candidate) >= MIN_SECRET:
            secrets.add(candidate)


class CaptureRules:
    """One API's capture settings in one environment, compiled."""

    __slots__ = (
        "backend_request",
        "backend_response",
        "bodies",
        "buffers_request",
        "details",
        "json_paths",
        "mask_headers",
        "mask_paths",
        "mask_query",
        "max_body",
        "query",
        "request",
        "response",
        "secret_values",
        "xpaths",
    )

    def __init__(self, api: ApiProxy, environment: str, secret_values: Iterable[str] = ()) -> None:
        capture: Capture = api.capture.for_environment(environment)
        self.request: RegionCapture = capture.request
        self.query = capture.query
        self.backend_request: RegionCapture = capture.backend_request
        self.backend_response: RegionCapture = capture.backend_response
        self.response: RegionCapture = capture.response
        self.max_body = capture.max_body_bytes
        self.bodies = any(
            r.body
            for r in (self.request, self.backend_request, self.backend_response, self.response)
        )
        """Some body is captured: credentials in headers are looked for in it too."""
        self.buffers_request = self.request.body or self.backend_request.body
        """The request body is read whole (up to the worker's limit) before the backend call."""
        self.details = self.query or any(
            r.headers or r.body
            for r in (self.request, self.backend_request, self.backend_response, self.response)
        )
        """Some region is captured: the record has a ``detail`` part."""
        key_headers, key_query = _api_key_names(
            [api.policies, *(e.policies for e in api.endpoints)]
        )
        self.mask_headers = frozenset(
            {*CREDENTIAL_HEADERS, *key_headers, *(h.lower() for h in capture.mask_headers)}
        )
        self.mask_query = frozenset(
            {*CREDENTIAL_QUERY, *key_query, *(q.lower() for q in capture.mask_query)}
        )
        self.json_paths: tuple[JsonPath, ...] = tuple(
            compile_jsonpath(p) for p in capture.mask_json
        )
        self.xpaths: tuple[ElementPath, ...] = tuple(
            compile_element_path(p) for p in capture.mask_xml
        )
        self.mask_paths = frozenset(
            {*(f"body.{p}" for p in capture.mask_json), *(f"xml.{p}" for p in capture.mask_xml)}
        )
        """The masked body paths as variables spell them (for ``mask_logged``)."""
        self.secret_values = frozenset(v for v in secret_values if len(v) >= MIN_SECRET)
        """Secret variables' values (``EnvironmentRevision.secret_values``): masked in any
        header or query value holding one, and wherever they appear in a body."""

    def _holds_secret(self, value: str) -> bool:
        return any(secret in value for secret in self.secret_values)

    # -- headers and query ------------------------------------------------------------------

    def headers(self, pairs: Iterable[tuple[bytes, bytes]], secrets: set[str]) -> list[list[str]]:
        """Header fields, masked; the values masked are added to ``secrets``."""
        out = []
        masked = self.mask_headers
        for raw_name, raw_value in pairs:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in masked or (self.secret_values and self._holds_secret(value)):
                _remember(value, secrets)
                value = MASK
            out.append([name, value])
        return out

    def query_pairs(self, query: str, secrets: set[str]) -> list[list[str]]:
        out = []
        masked = self.mask_query
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key.lower() in masked or (self.secret_values and self._holds_secret(value)):
                _remember(value, secrets)
                value = MASK
            out.append([key, value])
        return out

    def target(self, target: str) -> str:
        """A request target with its query parameters masked (the rest as sent)."""
        path, sep, query = target.partition("?")
        if not sep:
            return target
        masked = self.mask_query
        parts = []
        for item in query.split("&"):
            key = item.split("=", 1)[0]
            decoded = parse_qsl(item, keep_blank_values=True)
            name = decoded[0][0] if decoded else key
            value = decoded[0][1] if decoded else ""
            hidden = name.lower() in masked or self._holds_secret(value)
            parts.append(f"{key}={MASK}" if hidden else item)
        return f"{path}?{'&'.join(parts)}"

    def masks_source(self, source: str) -> bool:
        """Whether a value read from this variable (``header.X``, ``body.$.a`` ...) is masked."""
        for prefix, names in (
            ("header.", self.mask_headers),
            ("response.header.", self.mask_headers),
            ("query.", self.mask_query),
            ("form.", self.mask_query),
        ):
            if source.startswith(prefix) and source[len(prefix) :].lower() in names:
                return True
        return source in self.mask_paths

    def mask_logged(
        self,
        logged: dict[str, tuple[str, tuple[str, ...]]],
        headers: Iterable[tuple[bytes, bytes]],
        query: str,
    ) -> dict[str, str]:
        """The values a ``log`` policy wrote: one read from a masked variable is ``MASK``; the
        request's masked header and query values and secret variables' values are masked wherever
        they appear in the rest."""
        secrets: set[str] = set(self.secret_values)  # secret variables' values too
        self.headers(headers, secrets)
        self.query_pairs(query, secrets)
        out: dict[str, str] = {}
        for name, (text, sources) in logged.items():
            if any(self.masks_source(source) for source in sources):
                out[name] = MASK
                continue
            for secret in sorted(secrets, key=len, reverse=True):
                text = text.replace(secret, MASK)
            out[name] = text
        return out

    # -- bodies -------------------------------------------------------------------------------

    def body(
        self, data: bytes | None, content_type: str | None, secrets: set[str]
    ) -> dict[str, Any]:
        """A body, cut and masked; any value masked elsewhere in the request (``secrets``) is
        masked wherever it appears in the body's text too (a backend echoing a credential)."""
        if data is None:
            return {"omitted": "streamed"}
        kind = (content_type or "").split(";", 1)[0].strip().lower()
        out: dict[str, Any] = {"bytes": len(data)}
        whole = len(data) <= self.max_body
        structured = self._structured(kind)
        if structured is not None:
            if not whole:
                return out | {"omitted": "too large to mask"}
            masked = structured(data)
            if masked is None:
                return out | {"omitted": "cannot be parsed to mask"}
            data = masked
        cut = data[: self.max_body]
        if not whole:
            out["truncated"] = True
        try:
            text = cut.decode("utf-8")
        except UnicodeDecodeError:
            if any(s.encode("utf-8") in cut for s in secrets):
                return out | {"omitted": "binary, holds a credential"}
            out["base64"] = base64.b64encode(cut).decode("ascii")
            return out
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        out["text"] = text
        return out

    def _structured(self, kind: str) -> Any:
        if kind == _FORM:
            return self._mask_form
        if self.json_paths and (kind == "application/json" or kind.endswith("+json")):
            return self._mask_json
        if self.xpaths and (kind in ("application/xml", "text/xml") or kind.endswith("+xml")):
            return self._mask_xml
        return None

    def _mask_form(self, data: bytes) -> bytes | None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return self.target("?" + text)[1:].encode()

    def _mask_json(self, data: bytes) -> bytes | None:
        try:
            document = json.loads(data)
        except ValueError:
            return None
        for path in self.json_paths:
            for location, _ in path.find_paths(document):
                if not location:
                    return json.dumps(MASK).encode()
                parent = document
                for step in location[:-1]:
                    parent = parent[step]
                parent[location[-1]] = MASK
        return json.dumps(document, ensure_ascii=False).encode()

    def _mask_xml(self, data: bytes) -> bytes | None:
        try:
            root = parse_xml(data)
        except XmlRejected:
            return None
        wrapper = ET.Element("_portway_document")
        wrapper.append(root)
        for xpath in self.xpaths:
            for element in wrapper.findall(xpath.element_path):
                if xpath.attribute is not None:
                    if xpath.attribute in element.attrib:
                        element.attrib[xpath.attribute] = MASK
                    continue
                for child in list(element):
                    element.remove(child)
                element.text = MASK
        return bytes(ET.tostring(root, encoding="utf-8"))
