"""Create a SOAP API proxy from a WSDL 1.1 document (the text, or fetched from a URL).

One port of the WSDL is imported (``port``, default: the first SOAP 1.1 or 1.2 port): each of its
document-style operations becomes an endpoint ``POST /`` under the base path whose ``soap`` match
is the operation's SOAPAction and its input Body element, so the worker serves each operation
with its own policies and refuses an envelope whose action and element disagree. The API's
``soap_version`` is the port's, so the gateway's own error answers are SOAP faults. The backend
is the port's ``soap:address`` unless the request gives backends.

The WSDL is parsed by zeep without DTDs, entities or network (``portway.policies.wsdl``): a WSDL
that imports or includes other documents is refused, naming the reference. A URL is fetched as
the OpenAPI import does (``openapi_import.fetch_document``: size and time caps, no redirects,
internal addresses refused unless the manager allows them). What is not imported is reported
in ``warnings``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from portway.config.models import ApiProxy, Backend, Endpoint, SoapOperation
from portway.errors import ConfigError
from portway.manager.openapi_import import ImportTarget

MAX_OPERATIONS = 2000


class WsdlImportRequest(ImportTarget):
    """Where the WSDL comes from and which of its ports becomes a SOAP API proxy."""

    document: Annotated[str | None, Field(description="the WSDL document itself (XML text)")] = None
    port: Annotated[
        str | None,
        Field(max_length=200, description="the WSDL port to import; default: the first SOAP port"),
    ] = None

    @model_validator(mode="after")
    def _one_source(self) -> WsdlImportRequest:
        if (self.url is None) == (self.document is None):
            raise ValueError("give exactly one of url and document")
        return self


def _chosen(found: list[str], port: str | None, warnings: list[str]) -> str:
    ports = list(dict.fromkeys(found))
    if not ports:
        raise ConfigError("the WSDL has no SOAP 1.1 or 1.2 port", "body.document")
    if port is None:
        port = ports[0]
    elif port not in ports:
        raise ConfigError(
            f"port {port!r} is not a SOAP port of the WSDL (ports: {', '.join(ports)})",
            "body.port",
        )
    for other in ports:
        if other != port:
            warnings.append(f"port {other} is not imported (choose it with port)")
    return port


def build_api(
    text: str | bytes, request: WsdlImportRequest, project: str, field: str = "body.document"
) -> tuple[ApiProxy, list[str]]:
    """The API proxy for ``text``; ``ConfigError`` naming the field when it cannot be built."""
    from portway.policies.wsdl import WsdlRejected, load_wsdl, operations  # zeep: slow import

    try:
        document = load_wsdl(text)
    except WsdlRejected as exc:
        raise ConfigError(str(exc), field) from None
    warnings: list[str] = []
    found = operations(document)
    port = _chosen([op.port for op in found], request.port, warnings)
    chosen = [op for op in found if op.port == port]
    if len(chosen) > MAX_OPERATIONS:
        raise ConfigError(
            f"{len(chosen)} operations; at most {MAX_OPERATIONS} per API proxy", field
        )
    endpoints: list[Endpoint] = []
    for op in chosen:
        if op.style != "document":
            warnings.append(f"operation {op.name} is {op.style} style: not imported")
            continue
        if op.action is None and op.element is None:
            warnings.append(f"operation {op.name} has neither SOAPAction nor Body element")
            continue
        soap = SoapOperation(name=op.name, action=op.action, element=op.element)
        endpoints.append(
            Endpoint(
                path="/",
                methods=["POST"],
                description=f"SOAP operation {op.name}",
                soap=soap,
            )
        )
    if not endpoints:
        raise ConfigError(f"port {port} has no document/literal operation to import", field)
    version = chosen[0].version
    backends = request.backends
    if backends is None:
        address = chosen[0].address
        backends = []
        if address:
            try:
                backends = [Backend(url=address)]
            except ValidationError:
                warnings.append(f"soap:address {address!r} is not an absolute http(s) URL")
    if not backends:
        raise ConfigError("the port names no usable soap:address; give backends", "body.backends")
    service = chosen[0].service
    try:
        api = ApiProxy(
            name=request.name,
            project=project,
            description=(request.description or f"{service} ({port}, SOAP {version})")[:1000],
            base_path=request.base_path or f"/{request.name}",
            backends=backends,
            endpoints=endpoints,
            soap_version=version,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(["body", *(str(p) for p in first["loc"])])
        raise ConfigError(str(first["msg"]).removeprefix("Value error, "), where) from None
    return api, warnings
