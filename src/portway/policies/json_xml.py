"""JSON → XML and XML → JSON conversion of the request body (request list) or the response body
(response and error lists). XML is parsed without DTDs or entities (``xmlsafe``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Annotated

from pydantic import Field

from portway.policies.base import ALL_PHASES, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.jsonpath import load_json
from portway.policies.xmlsafe import (
    XmlRejected,
    data_to_element,
    element_to_data,
    parse_xml,
    xml_name,
)


def _set_body(headers: HeaderMap, content_type: str) -> None:
    headers.set("Content-Type", content_type)
    headers.remove("content-length")  # the worker frames the new body


class JsonToXmlConfig(PolicyConfig):
    root_element: Annotated[
        str, Field(min_length=1, max_length=100, description="name of the document element")
    ] = "root"
    item_element: Annotated[
        str,
        Field(min_length=1, max_length=100, description="element name of top-level array items"),
    ] = "item"
    declaration: Annotated[bool, Field(description="start with an XML declaration")] = True
    content_type: Annotated[
        str, Field(max_length=200, description="Content-Type of the converted body")
    ] = "application/xml; charset=utf-8"


class JsonToXmlPolicy(Policy[JsonToXmlConfig]):
    type_name = "json_to_xml"
    summary = "Convert a JSON body to XML (objects → elements, arrays → repeated elements)."
    config_model = JsonToXmlConfig
    phases = ALL_PHASES
    errors = {
        "invalid_json": ErrorSpec(400, "the body is not valid JSON"),
        "invalid_response": ErrorSpec(502, "the backend response is not valid JSON"),
    }

    def convert(self, body: bytes, failure: str) -> bytes:
        cfg = self.config
        try:
            document = load_json(body)
        except ValueError:
            raise Deny(failure) from None
        element = data_to_element(xml_name(cfg.root_element), document, xml_name(cfg.item_element))
        text = ET.tostring(element, encoding="unicode")
        prefix = '<?xml version="1.0" encoding="UTF-8"?>\n' if cfg.declaration else ""
        return (prefix + text).encode()

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        body = await ctx.request.body()
        ctx.request.set_body(self.convert(body, "invalid_json"))
        _set_body(ctx.request.headers, self.config.content_type)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is None:
            return None
        body = await ctx.response.body()
        ctx.response.set_body(self.convert(body, "invalid_response"))
        _set_body(ctx.response.headers, self.config.content_type)
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return await self.on_response(ctx)


class XmlToJsonConfig(PolicyConfig):
    keep_root: Annotated[
        bool, Field(description="wrap the result in an object named after the root element")
    ] = False
    content_type: Annotated[
        str, Field(max_length=200, description="Content-Type of the converted body")
    ] = "application/json"


class XmlToJsonPolicy(Policy[XmlToJsonConfig]):
    type_name = "xml_to_json"
    summary = "Convert an XML body to JSON (attributes as '@name', repeated elements as arrays)."
    config_model = XmlToJsonConfig
    phases = ALL_PHASES
    errors = {
        "invalid_xml": ErrorSpec(400, "the body is not acceptable XML"),
        "invalid_response": ErrorSpec(502, "the backend response is not acceptable XML"),
    }

    def convert(self, body: bytes, failure: str) -> bytes:
        try:
            root = parse_xml(body)
        except XmlRejected:
            raise Deny(failure) from None
        data = element_to_data(root)
        if self.config.keep_root:
            data = {root.tag.rsplit("}", 1)[-1]: data}
        return json.dumps(data, ensure_ascii=False).encode()

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        body = await ctx.request.body()
        ctx.request.set_body(self.convert(body, "invalid_xml"))
        _set_body(ctx.request.headers, self.config.content_type)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is None:
            return None
        body = await ctx.response.body()
        ctx.response.set_body(self.convert(body, "invalid_response"))
        _set_body(ctx.response.headers, self.config.content_type)
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return await self.on_response(ctx)
