"""A real SOAP backend on loopback for the SOAP tests: the stock service of
``tests/data/stockquote.wsdl`` (SOAP 1.1 at ``/soap``, SOAP 1.2 at ``/soap12``), answering real
envelopes and real faults; it also serves its WSDL (address filled in) and hostile WSDLs."""

from __future__ import annotations

import http.server
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WSDL = (Path(__file__).parents[1] / "data" / "stockquote.wsdl").read_text()
NS = "urn:example:stock"
ENV11 = "http://schemas.xmlsoap.org/soap/envelope/"
ENV12 = "http://www.w3.org/2003/05/soap-envelope"
PRICES = {"ACME": "12.50", "INITECH": "3.25"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SoapBackend:
    url: str
    received: list[Received] = field(default_factory=list)
    documents: dict[str, bytes] = field(default_factory=dict)

    def wsdl(self) -> str:
        """The WSDL with this backend's addresses."""
        return WSDL.replace("http://127.0.0.1:9", self.url)


def _fault(version: str, client: bool, text: str) -> bytes:
    if version == "1.1":
        code = "soap:Client" if client else "soap:Server"
        return (
            f'<soap:Envelope xmlns:soap="{ENV11}"><soap:Body><soap:Fault>'
            f"<faultcode>{code}</faultcode><faultstring>{text}</faultstring>"
            "</soap:Fault></soap:Body></soap:Envelope>"
        ).encode()
    value = "env:Sender" if client else "env:Receiver"
    return (
        f'<env:Envelope xmlns:env="{ENV12}"><env:Body><env:Fault>'
        f"<env:Code><env:Value>{value}</env:Value></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{text}</env:Text></env:Reason>'
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()


def answer(version: str, action: str | None, body: bytes) -> tuple[int, bytes]:
    """The stock service itself: (HTTP status, envelope)."""
    env = ENV11 if version == "1.1" else ENV12
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return 500, _fault(version, True, "not XML")
    payload = root.find(f"{{{env}}}Body/*")
    if root.tag != f"{{{env}}}Envelope" or payload is None:
        return 500, _fault(version, True, "not a SOAP envelope")
    name = payload.tag.removeprefix(f"{{{NS}}}")
    if action is not None and action != f"{NS}/{name}":
        return 500, _fault(version, True, f"SOAPAction {action} does not match {name}")
    if name == "GetQuote":
        symbol = payload.findtext(f"{{{NS}}}symbol") or ""
        currency = payload.findtext(f"{{{NS}}}currency") or "USD"
        if symbol == "CRASH":
            return 500, _fault(version, False, "quote service down")
        if symbol == "WRONGNS":
            # an answer in a namespace the WSDL does not declare
            out = '<GetQuoteResponse xmlns="urn:other"><symbol>X</symbol></GetQuoteResponse>'
            return 200, _envelope(version, out)
        if symbol not in PRICES:
            return 500, _fault(version, True, f"unknown symbol {symbol}")
        out = (
            f'<GetQuoteResponse xmlns="{NS}"><symbol>{symbol}</symbol>'
            f"<price>{PRICES[symbol]}</price><currency>{currency}</currency></GetQuoteResponse>"
        )
    elif name == "PlaceOrder":
        quantity = payload.findtext(f"{{{NS}}}quantity") or ""
        accepted = "true" if quantity.isdigit() and int(quantity) > 0 else "false"
        out = (
            f'<PlaceOrderResponse xmlns="{NS}"><orderId>o-{quantity}</orderId>'
            f"<accepted>{accepted}</accepted></PlaceOrderResponse>"
        )
    else:
        return 500, _fault(version, True, f"unknown operation {payload.tag}")
    return 200, _envelope(version, out)


def _envelope(version: str, payload: str) -> bytes:
    env, prefix = (ENV11, "soap") if version == "1.1" else (ENV12, "env")
    return (
        f'<{prefix}:Envelope xmlns:{prefix}="{env}"><{prefix}:Body>{payload}'
        f"</{prefix}:Body></{prefix}:Envelope>"
    ).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    backend: SoapBackend

    def do_GET(self) -> None:
        document = self.backend.documents.get(self.path)
        if document is None:
            self._send(404, "text/plain", b"no")
        else:
            self._send(200, "text/xml", document)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.backend.received.append(Received(self.path, headers, body))
        content_type = headers.get("content-type", "")
        if self.path == "/soap":
            action = headers.get("soapaction", "").strip('"') or None
            status, envelope = answer("1.1", action, body)
            self._send(status, "text/xml; charset=utf-8", envelope)
        elif self.path == "/soap12":
            action = None
            for part in content_type.split(";")[1:]:
                key, _, value = part.partition("=")
                if key.strip() == "action":
                    action = value.strip().strip('"')
            status, envelope = answer("1.2", action, body)
            self._send(status, "application/soap+xml; charset=utf-8", envelope)
        else:
            self._send(404, "text/plain", b"no such service")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def soap_backend() -> Iterator[SoapBackend]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    backend = SoapBackend(f"http://127.0.0.1:{server.server_address[1]}")
    handler = type("Handler", (_Handler,), {"backend": backend})
    server.RequestHandlerClass = handler
    backend.documents["/stock.wsdl"] = backend.wsdl().encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
