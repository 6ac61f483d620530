"""WSDL 1.1 documents parsed by zeep, with DTDs, entities and external references forbidden and a
transport that fetches nothing: a WSDL that imports or includes another document is refused,
naming it. zeep is imported only when a WSDL is used (it is slow to import), so a worker or a
manager that never meets a WSDL does not load it.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import zeep
import zeep.exceptions
from zeep.transports import Transport

from portway.policies.soap import MAX_ENVELOPE_ELEMENTS, SoapVersion
from portway.policies.xmlsafe import XmlRejected, parse_xml


class _NoFetch(Transport):
    """zeep's transport, refusing every load: imports and includes are never fetched."""

    def __init__(self) -> None:
        super().__init__(cache=None)  # type: ignore[no-untyped-call]

    def load(self, url: str) -> bytes:
        raise WsdlRejected(
            f"the WSDL refers to {url}: imports and includes are not fetched; inline the "
            "schemas into one self-contained document"
        )


class WsdlRejected(ValueError):
    """The WSDL cannot be used; the message says why."""


SETTINGS = zeep.Settings(
    strict=True,
    xml_huge_tree=False,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
)


def load_wsdl(text: str | bytes) -> Any:
    """The parsed WSDL (``zeep.wsdl.Document``); ``WsdlRejected`` naming the problem."""
    data = text.encode() if isinstance(text, str) else text
    try:
        parse_xml(data, max_elements=MAX_ENVELOPE_ELEMENTS)
    except XmlRejected as exc:
        raise WsdlRejected(f"the WSDL is not acceptable XML: {exc}") from None
    try:
        return zeep.wsdl.Document(
            io.BytesIO(data),
            transport=_NoFetch(),  # type: ignore[arg-type]  # zeep annotates the class
            settings=SETTINGS,
        )
    except WsdlRejected:
        raise
    except zeep.exceptions.ExternalReferenceForbidden as exc:
        raise WsdlRejected(
            f"the WSDL refers to {exc.url}: imports and includes are not fetched; inline the "
            "schemas into one self-contained document"
        ) from None
    except (zeep.exceptions.Error, ET.ParseError, ValueError, KeyError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WsdlRejected(f"not a usable WSDL 1.1 document: {reason}"[:500]) from None
    except RecursionError:
        raise WsdlRejected("not a usable WSDL 1.1 document: nested too deeply") from None


@dataclass(frozen=True, slots=True)
class WsdlOperation:
    service: str
    port: str
    name: str
    version: SoapVersion
    action: str | None
    element: str | None
    """``{namespace}local`` of the input body's element (document/literal)."""
    address: str | None
    style: str


def operations(document: Any) -> list[WsdlOperation]:
    """Every operation of every SOAP port of a parsed WSDL, in document order."""
    out: list[WsdlOperation] = []
    for service in document.services.values():
        for port in service.ports.values():
            binding = port.binding
            version: SoapVersion | None = {"Soap11Binding": "1.1", "Soap12Binding": "1.2"}.get(
                type(binding).__name__
            )  # type: ignore[assignment]
            if version is None:
                continue
            for name, operation in binding._operations.items():
                body = getattr(operation.input, "body", None)
                qname = getattr(body, "qname", None)
                out.append(
                    WsdlOperation(
                        service=service.name,
                        port=port.name,
                        name=name,
                        version=version,
                        action=operation.soapaction or None,
                        element=str(qname) if qname is not None else None,
                        address=port.binding_options.get("address"),
                        style=operation.style or "document",
                    )
                )
    return out
