"""Base of the policies that only check a body: the request body in the request list, the
backend's body in the response list; a check refuses with ``Deny`` and changes nothing."""

from __future__ import annotations

from portway.policies.base import C, Phase, Policy
from portway.policies.contract import PolicyContext, Reply


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
