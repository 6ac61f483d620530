"""The compiled pipeline of one route: request list in scope order, response and error lists in
reverse scope order, each policy with its active flag, condition, shadow mode and counters.

Contract with the worker (``portway.policies.contract.Pipeline``):

- ``on_request(ctx)``: ``None`` → call the backend; a ``Reply`` → send it as is, without calling
  the backend and without calling ``on_response`` (a policy answered: mock, CORS preflight,
  cache hit, token endpoint — or an error already rendered through the error list).
- ``on_response(ctx)`` with ``ctx.response`` set: ``None`` → send ``ctx.response`` (policies may
  have changed it, request-list policies in ``after_response`` too); a ``Reply`` → send that
  instead (an error rendered through the error list, also when ``after_response`` refused).
- ``on_error(ctx)`` with ``ctx.error`` set by the worker (backend unreachable, timeout ...):
  always returns the ``Reply`` to send.
- ``on_log(ctx)``: synchronous, only records into ``ctx.log``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portway.config.models import PolicyLists, PolicySpec
from portway.config.revision import EnvironmentRevision
from portway.errors import ConfigError, DeploymentError, StoreUnavailable
from portway.http import HTTPError
from portway.policies.base import Build, Deny, ErrorSpec, Phase, Policy
from portway.policies.conditions import Condition, compile_condition
from portway.policies.contract import (
    REPLY_HEADERS,
    GatewayError,
    HeaderMap,
    PolicyContext,
    Reply,
    ResponseView,
)
from portway.policies.registry import build_policy, resolve_spec
from portway.policies.render import render_error
from portway.policies.resources import PolicyCounters, PolicyServices

log = logging.getLogger("portway.policies")

_RAN = "_portway.ran"
_POLICY_ERROR = GatewayError(500, "policy_error", "the request could not be processed")
_STORE_ERROR = GatewayError(503, "store_unavailable", "a required service is unavailable")


@dataclass(frozen=True, slots=True)
class Step:
    policy: Policy[Any]
    scope: str
    condition: Condition | None
    shadow: bool
    messages: Mapping[str, str]
    counters: PolicyCounters
    has_after_response: bool
    has_finish: bool

    @property
    def name(self) -> str:
        return self.policy.name


def _const(body: bytes) -> Any:
    async def read() -> bytes:
        return body

    return read


def reply_to_response(reply: Reply) -> ResponseView:
    headers = HeaderMap(reply.headers)
    if "content-type" not in headers and reply.body:
        headers.set("Content-Type", reply.content_type)
    return ResponseView(reply.status, headers, _const(reply.body), reply.body)


def response_to_reply(response: ResponseView) -> Reply:
    headers = HeaderMap(response.headers.items())
    content_type = headers.get("content-type") or "application/octet-stream"
    headers.remove("content-type")
    headers.remove("content-length")
    return Reply(response.status, response.body_override or b"", headers.items(), content_type)


def _default_scope_names(count: int) -> list[str]:
    names = {1: ["proxy"], 2: ["proxy", "endpoint"], 3: ["group", "proxy", "endpoint"]}
    return names.get(count, [f"scope{i}" for i in range(count)])


class CompiledPipeline:
    """Immutable after compilation; all per-request state lives in the context."""

    __slots__ = (
        "_error",
        "_finishing",
        "_request",
        "_response",
        "_unwinding",
        "label",
        "response_phase",
        "services",
    )

    def __init__(
        self,
        request: Sequence[Step],
        response: Sequence[Step],
        error: Sequence[Step],
        services: PolicyServices,
        label: str,
    ) -> None:
        self._request = tuple(request)
        self._response = tuple(response)
        self._error = tuple(error)
        self._unwinding = any(s.has_after_response for s in self._request)
        """Some request-list policy acts on the response too (``after_response``)."""
        self._finishing = any(s.has_finish for s in (*self._request, *self._response, *self._error))
        """Some policy wants to know how the request ended (``finish``)."""
        self.response_phase = bool(self._response) or self._unwinding or self._finishing
        """Some policy acts on responses (``portway.policies.contract.Pipeline``)."""
        self.services = services
        self.label = label

    @property
    def steps(self) -> dict[str, tuple[str, ...]]:
        return {
            "request": tuple(s.name for s in self._request),
            "response": tuple(s.name for s in self._response),
            "error": tuple(s.name for s in self._error),
        }

    def counters(self) -> dict[str, dict[str, int]]:
        every = (*self._request, *self._response, *self._error)
        return {f"{s.scope}.{s.name}": s.counters.as_dict() for s in every}

    # -- the worker's entry points ------------------------------------------------------------

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        ran: list[Step] = ctx.variables.setdefault(_RAN, [])
        for step in self._request:
            if step.condition is None and not step.shadow:
                # the common step, without the extra coroutine of _run (same outcomes)
                step.counters.evaluated += 1
                try:
                    outcome: Any = await step.policy.on_request(ctx)
                except Exception as exc:
                    outcome = _failed(step, ctx, exc, None)
                else:
                    step.counters.allowed += 1
            else:
                outcome = await self._run(step, ctx, Phase.REQUEST)
            if outcome is _SKIP:
                continue
            ran.append(step)
            if isinstance(outcome, GatewayError):
                return await self._fail(ctx, outcome, step.messages)
            if isinstance(outcome, Reply):
                self._add_reply_headers(ctx, outcome.headers)
                if self._finishing:
                    await self._finish(ctx, outcome.status)
                return outcome
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is None:
            raise RuntimeError("on_response needs ctx.response")
        for step in self._response:
            outcome = await self._run(step, ctx, Phase.RESPONSE)
            if isinstance(outcome, GatewayError):
                return await self._fail(ctx, outcome, step.messages)
            if isinstance(outcome, Reply):
                ctx.response = reply_to_response(outcome)
        for step in reversed(ctx.variables.get(_RAN, ()) if self._unwinding else ()):
            if step.has_after_response:
                try:
                    await step.policy.after_response(ctx)
                except Deny as deny:
                    # a request-list policy that converts the answer may refuse it (soap_rest)
                    step.counters.denied += 1
                    ctx.log["denied_by"] = step.name
                    return await self._fail(ctx, _error_of(step, deny), step.messages)
                except HTTPError:
                    raise
                except Exception:
                    step.counters.errors += 1
                    log.exception("policy %s failed after the response", step.name)
        pending: list[tuple[str, str]] = ctx.variables.get(REPLY_HEADERS, [])
        for name, value in pending:
            ctx.response.headers.add(name, value)
        if self._finishing:
            await self._finish(ctx, ctx.response.status)
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        error = ctx.error or GatewayError(500, "internal_error", "the request failed")
        return await self._fail(ctx, error, {})

    def on_log(self, ctx: PolicyContext) -> None:
        ran = ctx.variables.get(_RAN)
        if ran:
            ctx.log["policies"] = [s.name for s in ran]

    # -- internals -------------------------------------------------------------------------------

    async def _run(self, step: Step, ctx: PolicyContext, phase: Phase) -> Any:
        """Run one hook; returns _SKIP, None (continue), a Reply, or a GatewayError."""
        if step.condition is not None and not await step.condition(ctx, self.services.clock()):
            step.counters.skipped += 1
            return _SKIP
        step.counters.evaluated += 1
        saved = _snapshot(ctx) if step.shadow else None
        try:
            if phase is Phase.REQUEST:
                result: Reply | None = await step.policy.on_request(ctx)
            elif phase is Phase.RESPONSE:
                result = await step.policy.on_response(ctx)
            else:
                result = await step.policy.on_error(ctx)
        except Exception as exc:
            return _failed(step, ctx, exc, saved)
        if saved is not None:
            _restore(ctx, saved)
            if result is not None:
                _record_shadow(ctx, step, "reply", result.status, None)
            step.counters.allowed += 1
            return _SKIP
        step.counters.allowed += 1
        return result

    async def _fail(
        self, ctx: PolicyContext, error: GatewayError, messages: Mapping[str, str]
    ) -> Reply:
        ctx.error = error
        now = self.services.clock()
        rendered = render_error(ctx, error, messages, self.services.error_rules, now)
        ctx.response = reply_to_response(rendered)
        for step in self._error:
            outcome = await self._run(step, ctx, Phase.ERROR)
            if isinstance(outcome, Reply):
                ctx.response = reply_to_response(outcome)
            # a failure inside the error list must not hide the original error
        reply = response_to_reply(ctx.response)
        self._add_reply_headers(ctx, reply.headers)
        if self._finishing:
            await self._finish(ctx, reply.status)
        return reply

    @staticmethod
    def _add_reply_headers(ctx: PolicyContext, headers: list[tuple[str, str]]) -> None:
        headers.extend(ctx.variables.get(REPLY_HEADERS, ()))

    async def _finish(self, ctx: PolicyContext, status: int) -> None:
        for step in ctx.variables.get(_RAN, ()):
            if step.has_finish:
                try:
                    await step.policy.finish(ctx, status)
                except Exception:
                    step.counters.errors += 1
                    log.exception("policy %s failed to finish", step.name)


_SKIP = object()


def _failed(step: Step, ctx: PolicyContext, exc: Exception, saved: _Snapshot | None) -> Any:
    """What a hook's exception makes of the step: a GatewayError, or _SKIP in shadow mode; a
    client or backend failure while reading a body (``HTTPError``) is raised again."""
    if isinstance(exc, Deny):
        error = _error_of(step, exc)
        if saved is not None:
            _restore(ctx, saved)
            step.counters.shadow_denied += 1
            _record_shadow(ctx, step, "deny", error.status, error.code)
            return _SKIP
        step.counters.denied += 1
        ctx.log["denied_by"] = step.name
        return error
    if isinstance(exc, HTTPError):
        # the client or the backend failed while a policy read a body (too large, too slow,
        # gone): the worker maps these to 413/408/502, they are not the policy's fault
        if saved is not None:
            _restore(ctx, saved)
        raise exc
    step.counters.errors += 1
    log.exception("policy %s failed", step.name, exc_info=exc)
    if saved is not None:
        _restore(ctx, saved)
        _record_shadow(ctx, step, "error", 500, type(exc).__name__)
        return _SKIP
    base = _STORE_ERROR if isinstance(exc, StoreUnavailable) else _POLICY_ERROR
    return GatewayError(base.status, base.code, base.message, policy=step.name)


def _error_of(step: Step, deny: Deny) -> GatewayError:
    spec = step.policy.errors.get(deny.code) or ErrorSpec(500, deny.code)
    return GatewayError(
        deny.status or spec.status,
        deny.code,
        deny.message or spec.message,
        list(deny.headers),
        step.name,
        deny.details,
    )


def _record_shadow(
    ctx: PolicyContext, step: Step, verdict: str, status: int, code: str | None
) -> None:
    records: list[dict[str, Any]] = ctx.log.setdefault("shadow", [])
    records.append({"policy": step.name, "would": verdict, "status": status, "code": code})


_Snapshot = tuple[Any, ...]


def _snapshot(ctx: PolicyContext) -> _Snapshot:
    req = ctx.request
    resp = ctx.response
    return (
        req.method,
        req.path,
        list(req.query),
        req.headers.items(),
        req.body_override,
        ctx.consumer,
        ctx.roles,
        dict(ctx.variables),
        list(ctx.variables.get(REPLY_HEADERS, ())),
        None if resp is None else (resp, resp.status, resp.headers.items(), resp.body_override),
    )


def _reset_headers(headers: HeaderMap, items: list[tuple[str, str]]) -> None:
    for name in {k for k, _ in headers.items()}:
        headers.remove(name)
    for name, value in items:
        headers.add(name, value)


def _restore(ctx: PolicyContext, saved: _Snapshot) -> None:
    (method, path, query, headers, body, consumer, roles, variables, pending, resp) = saved
    req = ctx.request
    req.method, req.path, req.body_override = method, path, body
    req.query[:] = query
    _reset_headers(req.headers, headers)
    ctx.consumer, ctx.roles = consumer, roles
    ctx.variables.clear()
    ctx.variables.update(variables)
    if pending or REPLY_HEADERS in ctx.variables:
        ctx.variables[REPLY_HEADERS] = pending
    if resp is not None:
        view, status, resp_headers, resp_body = resp
        ctx.response = view
        view.status, view.body_override = status, resp_body
        _reset_headers(view.headers, resp_headers)


def compile_pipeline(
    scopes: Sequence[PolicyLists],
    revision: EnvironmentRevision,
    services: PolicyServices,
    *,
    label: str = "",
    scope_names: Sequence[str] | None = None,
    scope_keys: Sequence[str] | None = None,
) -> CompiledPipeline:
    """Compile the policies of a route once per revision.

    ``scopes`` is ``[group?, proxy, endpoint?]`` from the outside in. Entries with ``global_ref``
    use ``revision.global_policies``; inactive entries are left out. A policy that cannot be
    compiled raises ``DeploymentError`` naming it (validation on write should have caught it).

    ``scope_keys`` identify each scope across routes and workers: counters, throttling windows
    and cache entries of a policy are keyed by its scope key and its name, so a proxy-level
    limit is shared by every endpoint route of the API (default: ``label|scope name``).
    """
    names = list(scope_names) if scope_names is not None else _default_scope_names(len(scopes))
    if len(names) != len(scopes):
        raise ValueError("scope_names must name every scope")
    keys = list(scope_keys) if scope_keys is not None else [f"{label}|{n}" for n in names]
    if len(keys) != len(scopes):
        raise ValueError("scope_keys must name every scope")
    key_of = dict(zip(names, keys, strict=True))
    consumers = services.consumer_index(revision)

    def steps(phase: Phase, ordered: Sequence[tuple[str, PolicyLists]]) -> list[Step]:
        out: list[Step] = []
        for scope_name, lists in ordered:
            specs: list[PolicySpec] = getattr(lists, phase.value)
            for index, entry in enumerate(specs):
                where = f"{label or 'route'}: {scope_name}.{phase.value}[{index}]"
                try:
                    spec = resolve_spec(entry, revision.global_policies)
                except ConfigError as exc:
                    raise DeploymentError(f"{where}: {exc}") from exc
                if spec is None:
                    continue
                build = Build(entry.name, key_of[scope_name], services, consumers)
                try:
                    policy = build_policy(spec, build, phase, where)
                    condition = (
                        compile_condition(spec.condition, f"{where}.condition")
                        if spec.condition
                        else None
                    )
                except ConfigError as exc:
                    raise DeploymentError(str(exc)) from exc
                cls = type(policy)
                out.append(
                    Step(
                        policy,
                        scope_name,
                        condition,
                        spec.shadow,
                        dict(spec.messages),
                        services.stats.counters(key_of[scope_name], scope_name, entry.name),
                        cls.overrides("after_response"),
                        cls.overrides("finish"),
                    )
                )
        return out

    forward = list(zip(names, scopes, strict=True))
    backward = list(reversed(forward))
    return CompiledPipeline(
        steps(Phase.REQUEST, forward),
        steps(Phase.RESPONSE, backward),
        steps(Phase.ERROR, backward),
        services,
        label,
    )
