"""The gateway's request handler: route, run the pipeline, call the backend, stream the answer.

``GatewayHandler`` serves every request from the runtime that is current when the request
arrives; ``swap`` replaces it atomically. A request keeps the runtime it started with until its
response has been sent (``Runtime.enter``/``leave``), and the old runtime is closed once no
request uses it: no request fails or sees two revisions during a swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from portway.compile.routing import NotAllowed
from portway.config.log_format import CORRELATION_ID
from portway.http import (
    Body,
    BodyTooLarge,
    ClientDisconnected,
    ConnectError,
    Handler,
    Headers,
    Outcome,
    Request,
    RequestTimeout,
    Response,
    Stream,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    pump,
)
from portway.http.target import BadTarget, canonical_path
from portway.policies.contract import (
    NO_PIPELINE,
    REPLY_HEADERS,
    GatewayError,
    HeaderMap,
    Pipeline,
    PolicyContext,
    Reply,
    RequestView,
    ResponseView,
    wire_headers,
)
from portway.policies.soap import (
    MAX_ENVELOPE_BYTES,
    NotAnEnvelope,
    SoapVersion,
    read_envelope,
    request_action,
)
from portway.policies.soap import request_version as soap_request_version
from portway.stores.traffic import TrafficRecord
from portway.worker.errors import client_soap_version, error_response, new_correlation_id
from portway.worker.grpc import GrpcAware, is_grpc
from portway.worker.headers import incoming_correlation_id, request_headers, response_headers
from portway.worker.jwks import jwks_response, serves_jwks
from portway.worker.runtime import Route, Runtime
from portway.worker.tracing import Tracing
from portway.worker.traffic import Choice
from portway.worker.traffic_record import RequestNote, traffic_record
from portway.worker.upstream import Address, NoHealthyUpstream

log = logging.getLogger("portway.worker")

CONTROL_PREFIX = "/_portway"


class GatewayHandler:
    """The ``portway.http`` handler of a worker."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        control: Handler | None = None,
        traffic: TrafficLog | None = None,
    ) -> None:
        self._runtime = runtime
        self.control = control
        self.traffic = traffic
        """Called with one record per proxied request once its response is sent (enqueue only)."""
        self.worker_id = ""
        """This worker's id in the traffic records."""
        self.tracing: Tracing | None = None
        """OpenTelemetry tracing (``portway.worker.tracing``), when configured."""
        self._retiring: set[asyncio.Task[None]] = set()
        self._grpc = GrpcAware(self._serve)

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    def swap(self, runtime: Runtime) -> Runtime | None:
        """Serve new requests from ``runtime`` (started already); the previous one is closed in
        the background once its last request has finished. Returns the previous runtime."""
        old = self._runtime
        self._runtime = runtime
        if old is not None and old is not runtime:
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return old

    async def _retire(self, runtime: Runtime) -> None:
        await runtime.wait_idle()
        await runtime.close()

    async def close(self, grace: float = 30.0) -> None:
        """Close the current runtime (after its requests) and those being retired."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.wait_idle(grace)
            await runtime.close()
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=grace)

    async def __call__(self, request: Request) -> Response:
        if request.http_version == "2" and is_grpc(request):
            return await self._grpc(request)
        return await self._serve(request)

    async def _serve(self, request: Request) -> Response:
        # one spelling per resource before anything looks at the path (docs/dataplane.md)
        try:
            path = request.path = canonical_path(request.path, request.query)
        except BadTarget as exc:
            cid = incoming_correlation_id(request) or new_correlation_id()
            return _bad_path(exc, cid, client_soap_version(request))
        if path.startswith(CONTROL_PREFIX) and (
            len(path) == len(CONTROL_PREFIX) or path[len(CONTROL_PREFIX)] == "/"
        ):
            if self.control is not None:
                return await self.control(request)
            cid = incoming_correlation_id(request) or new_correlation_id()
            return error_response(404, "not_found", "no such control endpoint", cid)
        runtime = self._runtime
        if runtime is None:
            cid = incoming_correlation_id(request) or new_correlation_id()
            return error_response(503, "no_configuration", "the worker has no configuration", cid)
        if serves_jwks(runtime.revision, runtime.settings.jwks_path, request):
            cid = incoming_correlation_id(request) or new_correlation_id()
            return jwks_response(runtime.revision, request, cid)
        runtime.enter()
        tracing = self.tracing
        note = (
            RequestNote(time.time(), time.monotonic(), self.worker_id)
            if self.traffic is not None or tracing is not None
            else None
        )
        if tracing is not None and note is not None:
            note.tracing = tracing
            note.span = tracing.start(request, note.started)
            note.hooks = []
        try:
            response = await _proxy(runtime, request, note)
        except BaseException:
            runtime.leave()
            raise
        finish = response.on_finish
        if finish is None:
            response.on_finish = _Leave(runtime)
        else:
            response.on_finish = _Chain(finish, runtime)
        if note is not None:
            response.on_finish = _Record(
                response.on_finish, self.traffic, runtime, request, note, response
            )
        return response


TrafficLog = Callable[[TrafficRecord], None]


class _Record:
    """Chains after the other finish callbacks and enqueues the request's traffic record."""

    __slots__ = ("_after", "_note", "_request", "_response", "_runtime", "_traffic")

    def __init__(
        self,
        after: Callable[[Outcome], None],
        traffic: TrafficLog | None,
        runtime: Runtime,
        request: Request,
        note: RequestNote,
        response: Response,
    ) -> None:
        self._after = after
        self._traffic = traffic
        self._runtime = runtime
        self._request = request
        self._note = note
        self._response = response

    def __call__(self, outcome: Outcome) -> None:
        try:
            self._after(outcome)
        finally:
            note = self._note
            try:
                record = traffic_record(self._runtime, self._request, note, self._response, outcome)
                if self._traffic is not None:
                    self._traffic(record)
                if note.tracing is not None:
                    note.tracing.finish(note, dict(record))
            except Exception:
                log.exception("the traffic log hook failed")
            finally:
                # the note and the policy context point at each other (the body readers fill
                # the note): unlinked here, they go by reference counting, not by the collector
                note.ctx = None


class _Leave:
    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __call__(self, outcome: Outcome) -> None:
        self._runtime.leave()


class _Chain:
    __slots__ = ("_first", "_runtime")

    def __init__(self, first: Any, runtime: Runtime) -> None:
        self._first = first
        self._runtime = runtime

    def __call__(self, outcome: Outcome) -> None:
        try:
            self._first(outcome)
        finally:
            self._runtime.leave()


class _Finish:
    """Runs when the response has been sent: releases an unfinished upstream, and when the
    request is recorded (``ctx`` given: traffic log or tracing) lets the pipeline note what ran."""

    __slots__ = ("ctx", "pipeline", "upstream")

    def __init__(
        self,
        upstream: UpstreamResponse | None,
        ctx: PolicyContext | None = None,
        pipeline: Pipeline = NO_PIPELINE,
    ) -> None:
        self.upstream = upstream
        self.ctx = ctx
        self.pipeline = pipeline

    def __call__(self, outcome: Outcome) -> None:
        if self.upstream is not None and not outcome.completed:
            self.upstream.close()
        ctx = self.ctx
        if ctx is not None:
            try:
                self.pipeline.on_log(ctx)
            except Exception:
                log.exception("the log hook failed")


def _bad_path(exc: BadTarget, cid: str, soap: SoapVersion | None = None) -> Response:
    details = [{"field": "path", "message": str(exc)}]
    return error_response(400, "invalid_path", str(exc), cid, details=details, soap=soap)


def _error_for(exc: BaseException) -> tuple[int, str, str]:
    if isinstance(exc, BadTarget):
        return 400, "invalid_path", str(exc)
    if isinstance(exc, NoHealthyUpstream):
        return 503, "no_healthy_upstream", "no healthy backend address is available"
    if isinstance(exc, UpstreamTimeout):
        return 504, "gateway_timeout", f"the backend did not answer in time ({exc.phase})"
    if isinstance(exc, ConnectError):
        return 502, "bad_gateway", "the backend cannot be reached"
    if isinstance(exc, UpstreamError):
        return 502, "bad_gateway", "the backend sent an invalid or incomplete response"
    if isinstance(exc, BodyTooLarge):
        return 413, "payload_too_large", "the request body is too large"
    if isinstance(exc, RequestTimeout):
        return 408, "request_timeout", "the request body arrived too slowly"
    return 500, "internal_error", "the gateway failed to handle the request"


def _reply_response(reply: Reply, cid: str) -> Response:
    headers: Headers = [(b"content-type", reply.content_type.encode("latin-1"))]
    for name, value in reply.headers:
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    headers.append((b"x-correlation-id", cid.encode("ascii")))
    return Response(reply.status, headers, reply.body)


def _forward_path(route: Route, request: Request, rest: str) -> bytes:
    # a stripped path may be empty: the backend's base path alone
    path = rest.encode("ascii") if route.api.strip_base_path else request.path.encode("ascii")
    if request.query:
        return path + b"?" + request.query.encode("ascii")
    return path


def _refuse(
    note: RequestNote | None,
    status: int,
    code: str,
    message: str,
    cid: str,
    headers: Headers | None = None,
    soap: SoapVersion | None = None,
) -> Response:
    """The gateway's error answer, its code noted for the traffic record."""
    if note is not None:
        note.error = code
    return error_response(status, code, message, cid, headers, soap=soap)


async def _proxy(runtime: Runtime, request: Request, note: RequestNote | None) -> Response:
    incoming = incoming_correlation_id(request)
    cid = incoming or new_correlation_id()
    CORRELATION_ID.set(cid)  # in every log line this request causes
    if note is not None:
        note.correlation_id = cid
        # a client may send any correlation id, again and again: never the record's id
        note.record_id = cid if incoming is None else new_correlation_id()
    match = runtime.router.match(request.host, request.method, request.path)
    if match is None:
        soap = client_soap_version(request)
        return _refuse(note, 404, "not_found", "no API matches this request", cid, soap=soap)
    if isinstance(match, NotAllowed):
        allow = ", ".join(sorted(match.allowed)).encode("ascii")
        refusing = match.value
        soap = client_soap_version(request) if refusing is None else _soap_of(request, refusing)
        return _refuse(
            note, 405, "method_not_allowed", "method not allowed", cid, [(b"allow", allow)], soap
        )
    route = match.value
    if note is not None:
        note.api = route.api.name
        note.project = route.api.project
        note.routed(runtime.capture[(route.api.project, route.api.name)], request)
    if route.operations:
        chosen = await _soap_operation(runtime, request, route, cid, note)
        if isinstance(chosen, Response):
            return chosen
        route = chosen
    if note is not None:
        note.endpoint = route.endpoint.path if route.endpoint is not None else None
    upstream = route.upstream
    if route.api.maintenance or upstream is None:
        soap = _soap_of(request, route)
        return _refuse(note, 503, "maintenance", "the API is under maintenance", cid, soap=soap)
    if route.pipeline is not NO_PIPELINE:
        return await _PipelineCall(runtime, request, route, match.params, cid, note).run(match.rest)
    cid_b = cid.encode("ascii")
    websocket = request.upgrade is not None
    headers = request_headers(
        request,
        trusted=request.client[0] in runtime.trusted,
        via=runtime.via,
        correlation_id=cid_b,
        websocket=websocket,
    )
    body = request.body
    data = body.take()
    forward = _forward_path(route, request, match.rest)
    client_ip = runtime.trusted.client_ip(request)
    if upstream.mirror is not None:
        try:
            data = await upstream.mirror.offer(request.method, forward, headers, data, body)
        except (BodyTooLarge, RequestTimeout) as exc:
            return _refuse(note, *_error_for(exc), cid)
    choice = upstream.choose(headers, client_ip)
    if note is not None:
        if data is None and note.capture is not None and note.capture.buffers_request:
            try:
                data = await body.read_all(runtime.max_body)
            except (BodyTooLarge, RequestTimeout) as exc:
                return _refuse(note, *_error_for(exc), cid, soap=_soap_of(request, route))
        note.sent(headers, data)
    try:
        response, address = await upstream.send(
            request.method,
            forward,
            headers,
            data if data is not None else body,
            content_length=body.length,
            client_ip=client_ip,
            trace=None if note is None else note.send,
            choice=choice,
            connection=route.connection,
        )
    except ClientDisconnected:
        raise
    except (UpstreamError, NoHealthyUpstream, BodyTooLarge, RequestTimeout, BadTarget) as exc:
        return _refuse(note, *_error_for(exc), cid, soap=_soap_of(request, route))
    if note is not None:
        note.backend = address.url
        note.backend_target = forward
        note.upstream = response
    out = response_headers(
        response.headers,
        via=runtime.via,
        version=response.http_version,
        correlation_id=cid_b,
        websocket=websocket and response.status == 101,
    )
    if choice is not None:
        _sticky(out, choice, address)
    if response.status == 101:
        if not websocket:
            response.close()
            message = "unexpected upgrade from backend"
            return error_response(502, "bad_gateway", message, cid, soap=_soap_of(request, route))
        return Response(101, out, tunnel=_Tunnel(response))
    taken = response.body.take()
    if note is not None:
        note.backend_response_body = taken
    if taken is not None:
        return Response(
            response.status, out, taken, content_length=response.content_length, checked=True
        )
    return Response(
        response.status,
        out,
        response,
        content_length=response.content_length,
        on_finish=_Finish(response),
        checked=True,
        trailers=response.trailers,
    )


def _no_line_breaks(headers: list[tuple[str, str]]) -> bool:
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            return False
    return True


def _sticky(out: Headers, choice: Choice, address: Address) -> None:
    cookie = choice.set_cookie(address)
    if cookie is not None:
        out.append((b"set-cookie", cookie))


def _soap_of(request: Request, route: Route) -> SoapVersion | None:
    """Errors are SOAP faults when the client spoke SOAP (in its version) or the API is a SOAP
    API (in the API's version)."""
    return client_soap_version(request) or route.api.soap_version


async def _soap_operation(
    runtime: Runtime, request: Request, route: Route, cid: str, note: RequestNote | None
) -> Route | Response:
    """The SOAP endpoint among ``route.operations`` whose action and Body element the request
    has (the body is read whole, within the body limit, and kept for the backend); otherwise
    the fault that says why not."""
    content_type = (request.header(b"content-type") or b"").decode("latin-1")
    raw_action = request.header(b"soapaction")
    header_action = None if raw_action is None else raw_action.decode("latin-1")
    version = soap_request_version(content_type, header_action)
    soap = version or route.api.soap_version or "1.1"
    if version is None:
        message = (
            "a SOAP request needs Content-Type text/xml with a SOAPAction header (SOAP 1.1) "
            "or application/soap+xml (SOAP 1.2)"
        )
        return _refuse(note, 415, "unsupported_media_type", message, cid, soap=soap)
    try:
        limit = min(runtime.max_body or MAX_ENVELOPE_BYTES, MAX_ENVELOPE_BYTES)
        data = await request.body.read_all(limit)
    except (BodyTooLarge, RequestTimeout) as exc:
        return _refuse(note, *_error_for(exc), cid, soap=soap)
    body = request.body = Body(None, len(data))
    body.feed(data)
    body.finish()
    try:
        envelope = read_envelope(data, version)
    except NotAnEnvelope as exc:
        message = f"not a usable SOAP envelope: {exc}"
        return _refuse(note, 400, "invalid_envelope", message, cid, soap=soap)
    action = request_action(content_type, header_action)
    element_known = False
    for candidate in route.operations:
        match = candidate.endpoint.soap if candidate.endpoint is not None else None
        if match is None or match.element not in (None, envelope.element):
            continue
        element_known = element_known or match.element is not None
        # a declared action must be the request's; without one, a declared element decides
        if match.action in (None, action) or (action is None and match.element is not None):
            return candidate
    if element_known:
        message = f"SOAPAction {action!r} is not the action of the Body element {envelope.element}"
        return _refuse(note, 400, "soap_action_mismatch", message, cid, soap=soap)
    message = f"no operation of this service takes the Body element {envelope.element}"
    return _refuse(note, 400, "unknown_operation", message, cid, soap=soap)


class _Tunnel:
    __slots__ = ("_upstream",)

    def __init__(self, upstream: UpstreamResponse) -> None:
        self._upstream = upstream

    async def __call__(self, client: Stream) -> None:
        await pump(client, self._upstream.stream())


class _RequestBody:
    """A policy's ``ctx.request.body()``: reads the client's body whole (within the API's limit).

    The body readers hold what they read from, never the ``_PipelineCall``: a bound method of the
    call, kept by the views the call holds, made every request a reference cycle that only the
    cyclic collector could free (its passes were ~10 % of a policy chain's time)."""

    __slots__ = ("_limit", "_note", "_request")

    def __init__(self, request: Request, limit: int | None, note: RequestNote | None) -> None:
        self._request = request
        self._limit = limit
        self._note = note

    async def __call__(self) -> bytes:
        data = await self._request.body.read_all(self._limit)
        if self._note is not None:
            self._note.client_body = data
        return data


class _ResponseBody:
    """A policy's ``ctx.response.body()``: reads the backend's body whole."""

    __slots__ = ("_note", "_upstream")

    def __init__(self, upstream: UpstreamResponse, note: RequestNote | None) -> None:
        self._upstream = upstream
        self._note = note

    async def __call__(self) -> bytes:
        data = await self._upstream.read_all(None)
        if self._note is not None:
            self._note.backend_response_body = data
        return data


class _PipelineCall:
    """One request through a route's policy pipeline: request hooks, the backend call, response
    hooks, then the client's response (or the pipeline's error answer at any step)."""

    __slots__ = (
        "choice",
        "cid",
        "ctx",
        "note",
        "pipeline",
        "query",
        "request",
        "route",
        "runtime",
        "view",
    )

    def __init__(
        self,
        runtime: Runtime,
        request: Request,
        route: Route,
        params: dict[str, str],
        cid: str,
        note: RequestNote | None,
    ) -> None:
        self.runtime = runtime
        self.request = request
        self.route = route
        self.pipeline = route.pipeline
        self.cid = cid
        self.note = note
        self.choice: Choice | None = None
        self.query = parse_qsl(request.query, keep_blank_values=True) if request.query else []
        self.view = RequestView(  # method, path, query, headers, read_body
            request.method,
            request.path,
            list(self.query),
            HeaderMap.from_wire(request.headers),
            _RequestBody(request, runtime.max_body, note),
        )
        self.ctx = PolicyContext(
            request=self.view,
            client_ip=runtime.trusted.client_ip(request),
            correlation_id=cid,
            environment=runtime.revision.environment,
            project=route.api.project,
            api=route.api.name,
            endpoint=route.endpoint.path if route.endpoint is not None else None,
            path_params=params,
            scheme=request.scheme,
            tls_peer_cert=request.tls_peer_cert,
            soap_version=_soap_of(request, route),
        )
        if note is not None:
            note.ctx = self.ctx

    async def run(self, rest: str) -> Response:
        began = time.monotonic() if self.note is not None else 0.0
        try:
            reply = await self.pipeline.on_request(self.ctx)
        except (BodyTooLarge, RequestTimeout) as exc:
            self._spent(began, "pipeline.request")
            return await self._fail(*_error_for(exc))
        if self.note is not None:
            self._spent(began, "pipeline.request")
        if reply is not None:
            return self._answer(reply, self._finish(None))
        self._apply_request_view()
        try:
            forward = self._forward_target(rest)
        except BadTarget as exc:
            return await self._fail(*_error_for(exc))
        try:
            upstream, address = await self._call_backend(forward)
        except ClientDisconnected:
            raise
        except (UpstreamError, NoHealthyUpstream, BodyTooLarge, RequestTimeout, BadTarget) as exc:
            return await self._fail(*_error_for(exc))
        if self.note is not None:
            self.note.backend = address.url
            self.note.backend_target = forward
            self.note.upstream = upstream
        if upstream.status == 101 and self.request.upgrade is not None:
            return self._tunnel(upstream)
        return await self._respond(upstream, address)

    def _spent(self, began: float, phase: str) -> None:
        """Adds the time since ``began`` to the pipeline's time (when logging or tracing)."""
        note = self.note
        if note is not None:
            ended = time.monotonic()
            note.pipeline_s += ended - began
            if note.hooks is not None:
                note.hooks.append((phase, began, ended))

    async def _fail(self, status: int, code: str, message: str) -> Response:
        ctx = self.ctx
        ctx.error = GatewayError(status, code, message)
        began = time.monotonic() if self.note is not None else 0.0
        try:
            reply = await self.pipeline.on_error(ctx)
        finally:
            self._spent(began, "pipeline.error")
        if reply is not None:
            out = _reply_response(reply, self.cid)
        else:
            out = error_response(status, code, message, self.cid, soap=ctx.soap_version)
        out.on_finish = self._finish(None)
        return out

    def _finish(self, upstream: UpstreamResponse | None) -> _Finish | None:
        """The response's finish callback: none when nothing is left to release or record."""
        if upstream is None and self.note is None:
            return None
        return _Finish(upstream, self.ctx if self.note is not None else None, self.pipeline)

    def _answer(self, reply: Reply, finish: _Finish | None) -> Response:
        """The pipeline's own answer instead of the backend's."""
        response = _reply_response(reply, self.cid)
        response.on_finish = finish
        return response

    def _apply_request_view(self) -> None:
        """What the policies changed in the request headers goes to the backend."""
        self.request.headers = self.view.headers.wire()

    def _forward_target(self, rest: str) -> bytes:
        """The backend's request target, with the policies' path and query rewrites."""
        request, view = self.request, self.view
        if view.path != request.path:
            # "" is the backend URL's own path (soap_rest's default)
            path = canonical_path(view.path).encode("ascii") if view.path else b""
            forward = path + (b"?" + request.query.encode("ascii") if request.query else b"")
        else:
            forward = _forward_path(self.route, request, rest)
        if view.query != self.query:
            base = forward.split(b"?", 1)[0]
            forward = base + (b"?" + urlencode(view.query).encode("ascii") if view.query else b"")
        return forward

    async def _call_backend(self, forward: bytes) -> tuple[UpstreamResponse, Address]:
        request, view, runtime = self.request, self.view, self.runtime
        headers = request_headers(
            request,
            trusted=request.client[0] in runtime.trusted,
            via=runtime.via,
            correlation_id=self.cid.encode("ascii"),
            websocket=request.upgrade is not None,
        )
        payload: bytes | Any
        note = self.note
        if (
            view.body_override is None
            and note is not None
            and note.capture is not None
            and note.capture.buffers_request
        ):
            await view.body()  # read whole, to be captured (BodyTooLarge: 413)
        if view.body_override is not None:
            payload, length = view.body_override, None
            if self.note is not None:
                self.note.backend_request_bytes = len(payload)
        else:
            body = request.body
            taken = body.take()
            payload, length = (taken, None) if taken is not None else (body, body.length)
        route_upstream = self.route.upstream
        assert route_upstream is not None
        mirror = route_upstream.mirror
        if mirror is not None:
            whole = payload if isinstance(payload, bytes) else None
            got = await mirror.offer(view.method, forward, headers, whole, request.body)
            if got is not None and whole is None:
                payload, length = got, None
        self.choice = route_upstream.choose(headers, self.ctx.client_ip)
        if self.note is not None:
            self.note.sent(headers, payload)
        upstream, address = await route_upstream.send(
            view.method,
            forward,
            headers,
            payload,
            content_length=length,
            client_ip=self.ctx.client_ip,
            trace=None if self.note is None else self.note.send,
            choice=self.choice,
            connection=self.route.connection,
        )
        return upstream, address

    def _tunnel(self, upstream: UpstreamResponse) -> Response:
        out = response_headers(
            upstream.headers,
            via=self.runtime.via,
            version=upstream.http_version,
            correlation_id=self.cid.encode("ascii"),
            websocket=True,
        )
        return Response(
            101,
            out,
            tunnel=_Tunnel(upstream),
            on_finish=self._finish(None),
        )

    async def _respond(self, upstream: UpstreamResponse, address: Address) -> Response:
        """Runs the response hooks, then answers the client with what they left. Without
        response hooks (``Pipeline.response_phase``) the backend's answer goes out with the
        reply headers the request's policies left, and no response view is built."""
        if self.pipeline.response_phase:
            hooked = await self._response_hooks(upstream)
            if isinstance(hooked, Response):
                return hooked
            status, headers, added, override = hooked
        else:
            added = self.ctx.variables.get(REPLY_HEADERS) or []
            status, override = upstream.status, None
            headers = wire_headers(upstream.headers, added) if added else upstream.headers
        out = response_headers(
            headers,
            via=self.runtime.via,
            version=upstream.http_version,
            correlation_id=self.cid.encode("ascii"),
        )
        if self.choice is not None:
            _sticky(out, self.choice, address)
        if override is not None:
            upstream.close()
            return Response(status, out, override, on_finish=self._finish(None))
        taken = upstream.body.take()
        if taken is not None and self.note is not None:
            self.note.backend_response_body = taken
        return Response(
            status,
            out,
            taken if taken is not None else upstream,
            content_length=upstream.content_length,
            # a body in hand leaves nothing to release
            on_finish=self._finish(None if taken is not None else upstream),
            # the backend's fields were checked by the parser and the framing ones dropped:
            # only what the policies added may still hold a line break
            checked=_no_line_breaks(added),
            trailers=upstream.trailers,
        )

    async def _response_hooks(
        self, upstream: UpstreamResponse
    ) -> Response | tuple[int, Headers, list[tuple[str, str]], bytes | None]:
        """Runs the response hooks on a view of the backend's answer: the answer to send
        instead (a reply, an error), or what they left: the status, the headers, those of them
        added as text, and the body that replaces the backend's."""
        ctx = self.ctx
        ctx.response = ResponseView(
            status=upstream.status,
            headers=HeaderMap.from_wire(upstream.headers),
            read_body=_ResponseBody(upstream, self.note),
        )
        began = time.monotonic() if self.note is not None else 0.0
        try:
            reply = await self.pipeline.on_response(ctx)
        except UpstreamError as exc:
            self._spent(began, "pipeline.response")
            upstream.close()
            return await self._fail(*_error_for(exc))
        self._spent(began, "pipeline.response")
        if reply is not None:
            upstream.close()
            return self._answer(reply, self._finish(None))
        view = ctx.response
        return view.status, view.headers.wire(), view.headers.added(), view.body_override
