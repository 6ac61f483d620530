"""Bases of the policies that work on a whole body: the request body in the request list, the
backend's body in the response list (and, for rewrites, the error answer in the error list).

- ``BodyCheckPolicy``: ``check`` refuses with ``Deny`` and changes nothing;
- ``BodyRewritePolicy``: ``rewrite`` returns the new body (or ``None`` to leave it), and may
  change the message's headers; the worker frames the new body (Content-Length is dropped).
"""

from __future__ import annotations

from portway.policies.base import ALL_PHASES, C, Phase, Policy
from portway.policies.contract import HeaderMap, PolicyContext, Reply


class BodyCheckPolicy(Policy[C]):
    phases = frozenset({Phase.REQUEST, Phase.RESPONSE})
    __slots__ = ()

    def check(self, body: bytes, content_type: str | None, response: bool) -> None:
        raise NotImplementedError

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        body = await ctx.request.body()
        self.check(body, ctx.request.headers.get("content-type"), response=False)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is None:
            return None
        body = await ctx.response.body()
        self.check(body, ctx.response.headers.get("content-type"), response=True)
        return None


class BodyRewritePolicy(Policy[C]):
    phases = ALL_PHASES
    __slots__ = ()

    def rewrite(self, body: bytes, headers: HeaderMap, response: bool) -> bytes | None:
        raise NotImplementedError

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        new = self.rewrite(await ctx.request.body(), ctx.request.headers, response=False)
        if new is not None:
            ctx.request.set_body(new)
            ctx.request.headers.remove("content-length")
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is None:
            return None
        new = self.rewrite(await ctx.response.body(), ctx.response.headers, response=True)
        if new is not None:
            ctx.response.set_body(new)
            ctx.response.headers.remove("content-length")
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return await self.on_response(ctx)
