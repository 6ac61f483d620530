"""Redaction: mask or remove fields of JSON bodies (JSONPath subset), of XML bodies
(ElementPath) and headers — in the request (request list) or the response (response and error
lists).

Redaction fails closed: when paths are configured and a non-empty body is neither JSON (for
``json_paths``) nor XML (for ``element_paths``), the message is refused rather than passed on
unredacted.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from portway.policies._body_policies import BodyRewritePolicy
from portway.policies._headers import SafeHeaderValue, check_header_name
from portway.policies.base import Build, Deny, ErrorSpec, PolicyConfig
from portway.policies.contract import HeaderMap
from portway.policies.jsonpath import compile_jsonpath, load_json
from portway.policies.xmlsafe import XmlRejected, compile_element_path, parse_xml

MAX_PATHS = 50


class RedactConfig(PolicyConfig):
    json_paths: Annotated[
        list[str],
        Field(max_length=MAX_PATHS, description="JSONPath (subset) of JSON body fields to redact"),
    ] = []
    element_paths: Annotated[
        list[str],
        Field(
            max_length=MAX_PATHS,
            description="ElementPath of XML elements (their text) or attributes ('/@name')",
        ),
    ] = []
    headers: Annotated[
        list[
            Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!#-'*+.0-9A-Z^-z|~-]+$")]
        ],
        Field(max_length=MAX_PATHS, description="header names to redact"),
    ] = []
    action: Annotated[
        Literal["mask", "remove"],
        Field(description="replace the value with the mask, or remove the field/header"),
    ] = "mask"
    mask: Annotated[
        SafeHeaderValue,
        Field(max_length=100, description="what a masked value is replaced with"),
    ] = "****"
    keep_last: Annotated[
        int,
        Field(ge=0, le=16, description="characters of the value kept after the mask (0 = none)"),
    ] = 0

    @field_validator("headers")
    @classmethod
    def _headers(cls, names: list[str]) -> list[str]:
        return [check_header_name(name) for name in names]

    @model_validator(mode="after")
    def _compile(self) -> RedactConfig:
        if not (self.json_paths or self.element_paths or self.headers):
            raise ValueError("give at least one of json_paths, element_paths, headers")
        for field, paths, compile_path in (
            ("json_paths", self.json_paths, compile_jsonpath),
            ("element_paths", self.element_paths, compile_element_path),
        ):
            for i, path in enumerate(paths):
                try:
                    compile_path(path)
                except ValueError as exc:
                    raise ValueError(f"{field}[{i}]: {exc}") from None
        return self


class RedactPolicy(BodyRewritePolicy[RedactConfig]):
    type_name = "redact"
    summary = "Mask or remove fields of JSON/XML bodies and headers."
    config_model = RedactConfig
    errors = {
        "unreadable_body": ErrorSpec(400, "the body cannot be read for redaction"),
        "unreadable_response": ErrorSpec(502, "the backend response cannot be read for redaction"),
    }
    __slots__ = ("_element_paths", "_json_paths")

    def __init__(self, config: RedactConfig, build: Build) -> None:
        super().__init__(config, build)
        self._json_paths = [compile_jsonpath(p) for p in config.json_paths]
        self._element_paths = [compile_element_path(p) for p in config.element_paths]

    def masked(self, value: str) -> str:
        keep = self.config.keep_last
        tail = value[-keep:] if keep and len(value) > keep else ""
        return self.config.mask + tail

    def _headers(self, headers: HeaderMap) -> None:
        for name in self.config.headers:
            values = headers.get_all(name)
            headers.remove(name)
            if self.config.action == "mask":
                for value in values:
                    headers.add(name, self.masked(value))

    def _json(self, document: Any) -> Any:
        wrapper = [document]  # so the root itself has a parent
        for path in self._json_paths:
            # deepest and last locations first: removing one never shifts another
            for location, value in sorted(path.find_paths(document), key=_order, reverse=True):
                parent: Any = wrapper
                *steps, last = (0, *location)
                for step in steps:
                    parent = parent[step]
                if self.config.action == "remove" and location:
                    del parent[last]
                else:
                    parent[last] = self.masked(_scalar_text(value))
        return wrapper[0]

    def _xml(self, root: ET.Element) -> ET.Element:
        wrapper = ET.Element("_portway_document")
        wrapper.append(root)
        for path in self._element_paths:
            parents = {child: parent for parent in wrapper.iter() for child in parent}
            for element in wrapper.findall(path.element_path):
                attribute = path.attribute
                if attribute is not None:
                    if attribute not in element.attrib:
                        continue
                    if self.config.action == "remove":
                        del element.attrib[attribute]
                    else:
                        element.attrib[attribute] = self.masked(element.attrib[attribute])
                elif self.config.action == "remove":
                    if element is root:
                        root.clear()  # the document element stays, empty
                    else:
                        parents[element].remove(element)
                else:
                    text = "".join(element.itertext())
                    for child in list(element):
                        element.remove(child)
                    element.text = self.masked(text)
        return root

    def _body(self, body: bytes, failure: str) -> bytes | None:
        if not body or not (self._json_paths or self._element_paths):
            return None
        if self._json_paths:
            try:
                document = load_json(body)
            except ValueError:
                pass
            else:
                return json.dumps(self._json(document), ensure_ascii=False).encode()
        if self._element_paths:
            try:
                root = parse_xml(body)
            except XmlRejected:
                pass
            else:
                text = ET.tostring(self._xml(root), encoding="unicode")
                declared = body.lstrip().startswith(b"<?xml")
                prefix = '<?xml version="1.0" encoding="UTF-8"?>\n' if declared else ""
                return (prefix + text).encode()
        raise Deny(failure)

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes | None:
        self._headers(headers)
        return self._body(body, "unreadable_response" if response else "unreadable_body")


def _scalar_text(value: Any) -> str:
    """What ``keep_last`` may keep of a JSON value: a string or a number; never part of an
    object or array (masked whole)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return ""


def _order(found: tuple[tuple[str | int, ...], Any]) -> tuple[int, tuple[str, ...]]:
    location = found[0]
    # by depth, then by position: list indexes compare numerically, keys as text
    return len(location), tuple(f"{p:012d}" if isinstance(p, int) else "~" + p for p in location)
