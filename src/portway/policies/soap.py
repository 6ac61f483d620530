"""SOAP 1.1 / 1.2 on the wire: which version a request speaks, which operation an envelope
calls, and the fault a SOAP client gets instead of a JSON error. Envelopes are parsed by
``xmlsafe`` (no DTD, no entity, bounded depth and size). WSDL documents: ``portway.policies.wsdl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

from portway.policies.xmlsafe import XmlRejected, parse_xml

SoapVersion = Literal["1.1", "1.2"]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
NAMESPACES: dict[str, SoapVersion] = {SOAP11_NS: "1.1", SOAP12_NS: "1.2"}
CONTENT_TYPES: dict[SoapVersion, str] = {
    "1.1": "text/xml; charset=utf-8",
    "1.2": "application/soap+xml; charset=utf-8",
}
MAX_ENVELOPE_ELEMENTS = 100_000
MAX_ENVELOPE_BYTES = 8 << 20
"""A SOAP request the worker reads to choose the operation is buffered whole: at most this, or
the worker's body limit when lower (413 past it)."""
ERROR_NS = "urn:portway:error"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _param(content_type: str, name: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def request_version(content_type: str | None, soap_action: str | None) -> SoapVersion | None:
    """The SOAP version a request announces by its headers: ``application/soap+xml`` is 1.2,
    ``text/xml`` with a ``SOAPAction`` header is 1.1; anything else is not SOAP."""
    kind = media_type(content_type)
    if kind == "application/soap+xml":
        return "1.2"
    if kind == "text/xml" and soap_action is not None:
        return "1.1"
    return None


def request_action(content_type: str | None, soap_action: str | None) -> str | None:
    """The action a request names: the ``SOAPAction`` header (1.1, quotes removed) or the
    ``action`` parameter of ``application/soap+xml`` (1.2); ``None`` when absent or empty."""
    if soap_action is not None:
        value = soap_action.strip().strip('"')
        return value or None
    if media_type(content_type) == "application/soap+xml":
        return _param(content_type or "", "action") or None
    return None


class NotAnEnvelope(ValueError):
    """The body is not a SOAP envelope this gateway accepts; the message says why."""


@dataclass(frozen=True, slots=True)
class Envelope:
    version: SoapVersion
    element: str
    """The first child of ``Body`` as ``{namespace}local``."""


def read_envelope(body: bytes, expected: SoapVersion | None = None) -> Envelope:
    """The version and the called element of a SOAP envelope; ``NotAnEnvelope`` otherwise (not
    well-formed, a DTD or entity, too deep or large, no Envelope/Body, an empty Body, the other
    version's namespace than ``expected``)."""
    try:
        root = parse_xml(body, max_elements=MAX_ENVELOPE_ELEMENTS)
    except XmlRejected as exc:
        raise NotAnEnvelope(str(exc)) from None
    namespace, _, local = root.tag[1:].partition("}") if root.tag[:1] == "{" else ("", "", "")
    version = NAMESPACES.get(namespace)
    if local != "Envelope" or version is None:
        raise NotAnEnvelope(
            f"the document element is {root.tag}, not a SOAP 1.1 or 1.2 Envelope "
            f"({{{SOAP11_NS}}}Envelope or {{{SOAP12_NS}}}Envelope)"
        )
    if expected is not None and version != expected:
        raise NotAnEnvelope(
            f"a SOAP {version} envelope sent as SOAP {expected} (Content-Type "
            f"{CONTENT_TYPES[expected].split(';')[0]})"
        )
    body_element = root.find(f"{{{namespace}}}Body")
    if body_element is None:
        raise NotAnEnvelope("the envelope has no Body")
    children = list(body_element)
    if not children:
        raise NotAnEnvelope("the envelope's Body is empty")
    return Envelope(version, children[0].tag)


# -- faults -----------------------------------------------------------------------------------


def fault(
    version: SoapVersion, status: int, code: str, message: str, correlation_id: str
) -> tuple[str, bytes]:
    """(Content-Type, body) of the SOAP fault standing for a gateway error: ``Client`` /
    ``Sender`` below 500, ``Server`` / ``Receiver`` from 500; the detail carries the error code
    and the correlation id."""
    text = escape(message)
    detail = (
        f'<pw:error xmlns:pw="{ERROR_NS}"><pw:code>{escape(code)}</pw:code>'
        f"<pw:status>{status}</pw:status>"
        f"<pw:correlationId>{escape(correlation_id)}</pw:correlationId></pw:error>"
    )
    client = status < 500
    if version == "1.1":
        faultcode = "soap:Client" if client else "soap:Server"
        body = (
            f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body><soap:Fault>'
            f"<faultcode>{faultcode}</faultcode><faultstring>{text}</faultstring>"
            f"<detail>{detail}</detail></soap:Fault></soap:Body></soap:Envelope>"
        )
    else:
        value = "env:Sender" if client else "env:Receiver"
        body = (
            f'<env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><env:Fault>'
            f"<env:Code><env:Value>{value}</env:Value></env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{text}</env:Text></env:Reason>'
            f"<env:Detail>{detail}</env:Detail></env:Fault></env:Body></env:Envelope>"
        )
    return CONTENT_TYPES[version], ('<?xml version="1.0" encoding="UTF-8"?>' + body).encode()


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault read from a backend's answer."""

    code: str
    """The local part of the fault code: ``Client``/``Server`` (1.1), ``Sender``/``Receiver``."""
    message: str


def read_fault(body: bytes) -> Fault | None:
    """The fault in a SOAP answer, or ``None`` when it holds none (or is no envelope)."""
    try:
        root = parse_xml(body, max_elements=MAX_ENVELOPE_ELEMENTS)
    except XmlRejected:
        return None
    for namespace in NAMESPACES:
        node = root.find(f"{{{namespace}}}Body/{{{namespace}}}Fault")
        if node is None:
            continue
        if namespace == SOAP11_NS:
            code = node.findtext("faultcode") or ""
            message = node.findtext("faultstring") or ""
        else:
            code = node.findtext(f"{{{namespace}}}Code/{{{namespace}}}Value") or ""
            message = node.findtext(f"{{{namespace}}}Reason/{{{namespace}}}Text") or ""
        return Fault(code.strip().rsplit(":", 1)[-1], message.strip())
    return None
