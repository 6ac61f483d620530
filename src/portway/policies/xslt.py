"""XSLT 1.0 transformation of the request body (request list) or the response body (response
and error lists) with lxml (libxslt).

Nothing a stylesheet does can reach outside the message: the stylesheet and the bodies are
refused when they carry a DTD (``xmlsafe``), they are parsed with ``no_network`` and without
entity resolution, ``xsl:import``/``xsl:include`` are refused when the policy is saved, and the
transformation runs under ``XSLTAccessControl.DENY_ALL`` (no ``document()`` read, no file or
network access, no ``exsl:document`` write). No extension functions are registered.
"""

from __future__ import annotations

from typing import Annotated, SupportsBytes, cast

from lxml import etree
from pydantic import Field, model_validator

from portway.policies._body_policies import BodyRewritePolicy
from portway.policies._headers import SafeHeaderValue
from portway.policies.base import Build, Deny, ErrorSpec, PolicyConfig
from portway.policies.contract import HeaderMap
from portway.policies.xmlsafe import XmlRejected, parse_xml

XSL = "http://www.w3.org/1999/XSL/Transform"
MAX_STYLESHEET_LENGTH = 1 << 20


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _parse(data: bytes) -> etree._ElementTree:
    parse_xml(data)  # refuses DTDs, entities and absurd depth before lxml sees the document
    return etree.ElementTree(etree.fromstring(data, _parser()))


def compile_stylesheet(text: str) -> etree.XSLT:
    try:
        document = _parse(text.encode())
    except (XmlRejected, etree.XMLSyntaxError) as exc:
        raise ValueError(f"stylesheet is not acceptable XML: {exc}") from None
    for tag in ("import", "include"):
        if document.find(f".//{{{XSL}}}{tag}") is not None:
            raise ValueError(f"xsl:{tag} is not allowed: the stylesheet must be self-contained")
    try:
        return etree.XSLT(document, access_control=etree.XSLTAccessControl.DENY_ALL)
    except etree.XSLTParseError as exc:
        raise ValueError(f"stylesheet is not valid XSLT 1.0: {exc}") from None


class XsltConfig(PolicyConfig):
    stylesheet: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_STYLESHEET_LENGTH,
            description="the XSLT 1.0 stylesheet itself, self-contained",
        ),
    ]
    content_type: Annotated[
        SafeHeaderValue | None,
        Field(max_length=200, description="Content-Type of the result (unchanged when absent)"),
    ] = None

    @model_validator(mode="after")
    def _compiles(self) -> XsltConfig:
        compile_stylesheet(self.stylesheet)
        return self


class XsltPolicy(BodyRewritePolicy[XsltConfig]):
    type_name = "xslt"
    summary = "Transform an XML body with an XSLT 1.0 stylesheet (no file or network access)."
    config_model = XsltConfig
    errors = {
        "invalid_xml": ErrorSpec(400, "the body is not acceptable XML"),
        "invalid_response": ErrorSpec(502, "the backend response is not acceptable XML"),
        "transform_failed": ErrorSpec(500, "the XSLT transformation failed"),
    }
    __slots__ = ("_transform",)

    def __init__(self, config: XsltConfig, build: Build) -> None:
        super().__init__(config, build)
        self._transform = compile_stylesheet(config.stylesheet)

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes:
        try:
            document = _parse(body)
        except (XmlRejected, etree.XMLSyntaxError):
            raise Deny("invalid_response" if response else "invalid_xml") from None
        try:
            result = self._transform(document)
        except etree.XSLTApplyError as exc:
            raise Deny("transform_failed", details={"reason": str(exc)[:500]}) from None
        if self.config.content_type is not None:
            headers.set("Content-Type", self.config.content_type)
        # serialized as the stylesheet's xsl:output says (the stubs lack __bytes__)
        return bytes(cast(SupportsBytes, result))
