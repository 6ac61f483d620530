"""A SOAP backend operation as a JSON REST endpoint (document/literal).

In the request list: the JSON object in the request body becomes the operation's input element,
serialized by zeep from the WSDL's message schema (namespaces, element order, types); the request
goes out as ``POST`` with the SOAP version's Content-Type and action. Once the backend answered,
its envelope becomes a JSON object (the output element's children; decimals as strings, dates in
ISO 8601); a SOAP fault becomes an error answer with the fault string: ``Client``/``Sender``
faults 400, any other fault 502. Response-list policies of the route see the SOAP answer, before
this conversion. The reverse (a REST backend behind a SOAP face) is not offered.

The WSDL is given inline and must be self-contained: nothing it imports is fetched
(``portway.policies.wsdl``, imported when the first ``soap_rest`` config is read).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
from typing import Annotated, Any

from lxml import etree
from pydantic import Field, model_validator

from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply
from portway.policies.jsonpath import load_json
from portway.policies.soap import (
    CONTENT_TYPES,
    NotAnEnvelope,
    SoapVersion,
    read_envelope,
    read_fault,
)

MAX_WSDL_LENGTH = 2 << 20
_PATH = r"^(/[A-Za-z0-9._~!$&'()*+,=:@%-]*)+$"


@functools.lru_cache(maxsize=32)
def _wsdl(text: str) -> Any:
    """The parsed WSDL (parsed once per text); ``ValueError`` naming the problem."""
    from portway.policies.wsdl import WsdlRejected, load_wsdl

    try:
        return load_wsdl(text)
    except WsdlRejected as exc:
        raise ValueError(f"wsdl: {exc}") from None


def _find(document: Any, operation: str, port: str | None) -> tuple[Any, Any, SoapVersion]:
    """(binding, operation, version) of ``operation``: in ``port`` when given, else in the
    first SOAP port that has it; ``ValueError`` naming what is missing."""
    seen: list[str] = []
    for service in document.services.values():
        for name, candidate in service.ports.items():
            kind = type(candidate.binding).__name__
            version: SoapVersion | None = (
                "1.1" if kind == "Soap11Binding" else "1.2" if kind == "Soap12Binding" else None
            )
            if version is None:
                continue
            seen.append(name)
            if port is not None and name != port:
                continue
            found = candidate.binding._operations.get(operation)
            if found is not None:
                return candidate.binding, found, version
    if port is not None and port not in seen:
        raise ValueError(f"port {port!r} is not a SOAP port of the WSDL (ports: {seen})")
    raise ValueError(f"operation {operation!r} is not in the WSDL's SOAP ports")


class SoapRestConfig(PolicyConfig):
    wsdl: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_WSDL_LENGTH,
            description="the WSDL 1.1 document itself, self-contained (imports are not fetched)",
        ),
    ]
    operation: Annotated[
        str, Field(min_length=1, max_length=200, description="the operation's name in the WSDL")
    ]
    port: Annotated[
        str | None,
        Field(max_length=200, description="the WSDL port; default: the first that has it"),
    ] = None
    path: Annotated[
        str | None,
        Field(
            max_length=2000,
            pattern=_PATH,
            description="path of the SOAP endpoint under the backend URL; default: the backend "
            "URL itself",
        ),
    ] = None

    @model_validator(mode="after")
    def _operation(self) -> SoapRestConfig:
        _, operation, _ = _find(_wsdl(self.wsdl), self.operation, self.port)
        if operation.style != "document":
            raise ValueError(f"operation {self.operation!r} is rpc style: only document/literal")
        return self


def _plain(value: Any) -> Any:
    """zeep's result as JSON-ready data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="unicode")
    return value


class SoapRestPolicy(Policy[SoapRestConfig]):
    type_name = "soap_rest"
    summary = "Expose a SOAP (document/literal) backend operation as a JSON REST endpoint."
    config_model = SoapRestConfig
    errors = {
        "invalid_json": ErrorSpec(400, "the body is not a JSON object"),
        "invalid_request": ErrorSpec(400, "the body does not match the operation's input"),
        "client_fault": ErrorSpec(400, "the SOAP service refused the request"),
        "server_fault": ErrorSpec(502, "the SOAP service failed"),
        "invalid_response": ErrorSpec(502, "the backend's answer is not the operation's output"),
    }
    __slots__ = ("_binding", "_content_type", "_operation", "_version")

    def __init__(self, config: SoapRestConfig, build: Build) -> None:
        super().__init__(config, build)
        self._binding, self._operation, self._version = _find(
            _wsdl(config.wsdl), config.operation, config.port
        )
        content_type = CONTENT_TYPES[self._version]
        action = self._operation.soapaction
        if self._version == "1.2" and action:
            content_type += f'; action="{action}"'
        self._content_type = content_type

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        from zeep.exceptions import Error as ZeepError

        raw = await ctx.request.body()
        try:
            document = load_json(raw) if raw.strip() else {}
        except ValueError:
            raise Deny("invalid_json") from None
        if not isinstance(document, dict):
            raise Deny("invalid_json")
        try:
            message = self._operation.input.serialize(**document)
        except (TypeError, ValueError, ZeepError) as exc:
            reason = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            raise Deny("invalid_request", message=reason) from None
        envelope = etree.tostring(message.content, xml_declaration=True, encoding="utf-8")
        request = ctx.request
        request.method = "POST"
        request.set_body(envelope)
        headers = request.headers
        headers.remove("content-length")
        headers.remove("soapaction")
        headers.set("Content-Type", self._content_type)
        if self._version == "1.1":
            headers.set("SOAPAction", message.headers.get("SOAPAction", '""'))
        headers.set("Accept", CONTENT_TYPES[self._version].split(";", 1)[0])
        request.path = self.config.path or ""
        return None

    async def after_response(self, ctx: PolicyContext) -> None:
        from zeep.exceptions import Error as ZeepError
        from zeep.helpers import serialize_object

        response = ctx.response
        if response is None:
            return
        body = await response.body()
        found = read_fault(body)
        if found is not None:
            code = "client_fault" if found.code in ("Client", "Sender") else "server_fault"
            raise Deny(code, message=found.message[:1000] or None)
        try:
            read_envelope(body, self._version)
            root = etree.fromstring(body, parser=_parser())
            result = self._operation.process_reply(root)
        except NotAnEnvelope as exc:
            raise Deny("invalid_response", details={"reason": str(exc)[:500]}) from None
        except (ZeepError, etree.LxmlError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            raise Deny("invalid_response", details={"reason": reason}) from None
        if response.status >= 300:
            raise Deny("invalid_response", details={"reason": f"status {response.status}"})
        data = _plain(serialize_object(result, dict))  # type: ignore[no-untyped-call]
        response.set_body(json.dumps(data, ensure_ascii=False).encode())
        response.headers.remove("content-length")
        response.headers.set("Content-Type", "application/json")


def _parser() -> etree.XMLParser:
    # the body passed xmlsafe already (no DTD, no entity); lxml is told the same again
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
