"""XML Schema (XSD 1.0) validation of the request body (request list) or the response body
(response list) with ``xmlschema``; the 400 answer names the first violation's path and reason.

The schema is given inline in the config and compiled when the policy is saved: it may not
import or include anything (no file, no network: ``allow="none"``), and it is parsed without
entities. Bodies are parsed by ``xmlsafe`` (no DTD, no entity, bounded depth) before validation.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from portway.policies._body_policies import BodyCheckPolicy
from portway.policies.base import Build, Deny, ErrorSpec, PolicyConfig
from portway.policies.xmlsafe import XmlRejected, parse_xml

if TYPE_CHECKING:
    import xmlschema

MAX_SCHEMA_LENGTH = 1 << 20


def compile_xml_schema(text: str) -> xmlschema.XMLSchema:
    """The compiled schema; ``ValueError`` naming the problem (not XML, not a valid XSD, an
    import or include, which is never fetched).

    ``xmlschema`` (with elementpath, ~12 MB of a worker's RSS) is imported on first use, so a
    worker whose revision has no XML Schema policy does not carry it.
    """
    import xmlschema
    from xmlschema.exceptions import XMLSchemaWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            schema = xmlschema.XMLSchema(io.StringIO(text), allow="none", defuse="always")
        except RecursionError:
            raise ValueError("schema is not a usable XML Schema: nested too deeply") from None
        except xmlschema.XMLSchemaException as exc:
            reason = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
            raise ValueError(f"schema is not a usable XML Schema: {reason}") from None
    for warning in caught:
        if issubclass(warning.category, XMLSchemaWarning):
            message = str(warning.message).splitlines()[0]
            raise ValueError(f"schema imports and includes are not fetched: {message}")
    return schema


class XmlSchemaConfig(PolicyConfig):
    xml_schema: Annotated[
        str,
        Field(
            alias="schema",
            min_length=1,
            max_length=MAX_SCHEMA_LENGTH,
            description="the XML Schema document (XSD 1.0) itself, self-contained",
        ),
    ]
    require_xml_content_type: Annotated[
        bool, Field(description="refuse bodies whose Content-Type is not XML")
    ] = False

    model_config = {"populate_by_name": True}

    @model_validator(mode="after")
    def _schema(self) -> XmlSchemaConfig:
        compile_xml_schema(self.xml_schema)
        return self


class XmlSchemaPolicy(BodyCheckPolicy[XmlSchemaConfig]):
    type_name = "xml_schema"
    summary = "Validate the XML body against an XML Schema (XSD)."
    config_model = XmlSchemaConfig
    errors = {
        "invalid_xml": ErrorSpec(400, "the body is not acceptable XML"),
        "schema_violation": ErrorSpec(400, "the body does not match the schema"),
        "invalid_response": ErrorSpec(502, "the backend response does not match the schema"),
    }
    __slots__ = ("_schema",)

    def __init__(self, config: XmlSchemaConfig, build: Build) -> None:
        super().__init__(config, build)
        self._schema = compile_xml_schema(config.xml_schema)

    def check(self, body: bytes, content_type: str | None, response: bool) -> None:
        failure = "invalid_response" if response else "invalid_xml"
        if self.config.require_xml_content_type and "xml" not in (content_type or "").lower():
            raise Deny(failure, message="the body must be XML (Content-Type)")
        try:
            root = parse_xml(body)
        except XmlRejected as exc:
            raise Deny(failure, details={"reason": str(exc)[:500]}) from None
        for error in self._schema.iter_errors(root, use_location_hints=False):
            code = "invalid_response" if response else "schema_violation"
            reason = error.reason or error.message.splitlines()[0]
            raise Deny(code, details={"path": error.path or "/", "reason": reason[:500]})
