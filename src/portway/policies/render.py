"""Error responses: which message and body a client gets, always with the correlation id (in the
built-in body; the worker also sends it as the ``X-Correlation-Id`` header of every answer).

Precedence (first that applies wins):
1. per-error template: the policy's ``messages[code]``;
2. policy-level template: the policy's ``messages["*"]``;
3. platform error rules (``PolicyServices.error_rules``, by code, then ``"*"``);
4. the built-in default: ``{"status", "error", "message", "correlation_id"}`` as JSON, or a
   SOAP fault (``portway.policies.soap.fault``) when ``ctx.soap_version`` is set.

Templates use ``$name`` / ``${name}`` placeholders: ``code``, ``status``, ``message``,
``correlation_id``, ``request_uri``, ``method``, ``time``. Values are escaped for the body's
content type (JSON, XML/HTML), never evaluated: a template cannot reach Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from string import Template
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from portway.policies._headers import clean_header_value
from portway.policies.contract import GatewayError, PolicyContext, Reply
from portway.policies.resources import ErrorRule
from portway.policies.soap import fault

TEMPLATE_FIELDS = ("code", "status", "message", "correlation_id", "request_uri", "method", "time")


def check_template(text: str) -> str:
    """Validate a template's placeholders; raise ValueError with an exact message."""
    template = Template(text)
    if not template.is_valid():
        raise ValueError("invalid placeholder: use $name or ${name}, and $$ for a literal $")
    unknown = sorted(set(template.get_identifiers()) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ValueError(f"unknown placeholder ${unknown[0]} (known: {', '.join(TEMPLATE_FIELDS)})")
    return text


def escape_for(content_type: str, value: str) -> str:
    if "json" in content_type:
        return json.dumps(value)[1:-1]
    if "xml" in content_type or "html" in content_type:
        return escape(value, {'"': "&quot;", "'": "&apos;"})
    return value


def _request_uri(ctx: PolicyContext) -> str:
    query = ctx.request.query
    return ctx.request.path + ("?" + urlencode(query) if query else "")


def render_error(
    ctx: PolicyContext,
    error: GatewayError,
    messages: Mapping[str, str],
    rules: Sequence[ErrorRule],
    now: float,
) -> Reply:
    rule = next((r for r in rules if r.code == error.code), None) or next(
        (r for r in rules if r.code == "*"), None
    )
    fields = {
        "code": error.code,
        "status": str(rule.status if rule and rule.status else error.status),
        "correlation_id": ctx.correlation_id,
        "request_uri": _request_uri(ctx),
        "method": ctx.request.method,
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
    }
    message_template = messages.get(error.code) or messages.get("*")
    if message_template is None and rule is not None and rule.message is not None:
        message_template = rule.message
    if message_template is None:
        message = error.message
    else:
        message = Template(message_template).safe_substitute(fields, message=error.message)
    fields["message"] = message
    status = int(fields["status"])
    # the worker adds the X-Correlation-Id header to every answer it sends
    headers = [(n, clean_header_value(v)) for n, v in error.headers]
    if rule is not None:
        escaped = {k: escape_for(rule.content_type, v) for k, v in fields.items()}
        body = Template(rule.body).safe_substitute(escaped).encode()
        return Reply(status, body, headers, rule.content_type)
    if ctx.soap_version is not None:
        content_type, body = fault(
            ctx.soap_version, status, error.code, message, ctx.correlation_id
        )
        return Reply(status, body, headers, content_type)
    document: dict[str, object] = {
        "status": status,
        "error": error.code,
        "message": message,
        "correlation_id": ctx.correlation_id,
    }
    if error.details:
        for key, value in error.details.items():
            document.setdefault(key, value)
    return Reply(status, json.dumps(document).encode(), headers, "application/json")
