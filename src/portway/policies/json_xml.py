"""JSON → XML and XML → JSON conversion of the request body (request list) or the response body
(response and error lists). XML is parsed without DTDs or entities (``xmlsafe``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Annotated

from pydantic import Field

from portway.policies._body_policies import BodyRewritePolicy
from portway.policies._headers import SafeHeaderValue
from portway.policies.base import Deny, ErrorSpec, PolicyConfig
from portway.policies.contract import HeaderMap
from portway.policies.jsonpath import load_json
from portway.policies.xmlsafe import (
    XmlRejected,
    data_to_element,
    element_to_data,
    parse_xml,
    xml_name,
)


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
        SafeHeaderValue, Field(max_length=200, description="Content-Type of the converted body")
    ] = "application/xml; charset=utf-8"


class JsonToXmlPolicy(BodyRewritePolicy[JsonToXmlConfig]):
    type_name = "json_to_xml"
    summary = "Convert a JSON body to XML (objects → elements, arrays → repeated elements)."
    config_model = JsonToXmlConfig
    errors = {
        "invalid_json": ErrorSpec(400, "the body is not valid JSON"),
        "invalid_response": ErrorSpec(502, "the backend response is not valid JSON"),
    }

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes:
        cfg = self.config
        try:
            document = load_json(body)
        except ValueError:
            raise Deny("invalid_response" if response else "invalid_json") from None
        element = data_to_element(xml_name(cfg.root_element), document, xml_name(cfg.item_element))
        text = ET.tostring(element, encoding="unicode")
        prefix = '<?xml version="1.0" encoding="UTF-8"?>\n' if cfg.declaration else ""
        headers.set("Content-Type", cfg.content_type)
        return (prefix + text).encode()


class XmlToJsonConfig(PolicyConfig):
    keep_root: Annotated[
        bool, Field(description="wrap the result in an object named after the root element")
    ] = False
    content_type: Annotated[
        SafeHeaderValue, Field(max_length=200, description="Content-Type of the converted body")
    ] = "application/json"


class XmlToJsonPolicy(BodyRewritePolicy[XmlToJsonConfig]):
    type_name = "xml_to_json"
    summary = "Convert an XML body to JSON (attributes as '@name', repeated elements as arrays)."
    config_model = XmlToJsonConfig
    errors = {
        "invalid_xml": ErrorSpec(400, "the body is not acceptable XML"),
        "invalid_response": ErrorSpec(502, "the backend response is not acceptable XML"),
    }

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes:
        try:
            root = parse_xml(body)
        except XmlRejected:
            raise Deny("invalid_response" if response else "invalid_xml") from None
        data = element_to_data(root)
        if self.config.keep_root:
            data = {root.tag.rsplit("}", 1)[-1]: data}
        headers.set("Content-Type", self.config.content_type)
        return json.dumps(data, ensure_ascii=False).encode()
