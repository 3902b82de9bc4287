"""Proxying an OpenAI-style call to the route's target, streaming or not.

The body is parsed once by the caller; here the route is resolved, the caller's access to
it checked and admitted (limits, budget), the model name swapped for the target's, and the
provider called. Only the usage object of the reply is read; the reply's bytes are passed
back untouched. Tokens and cost are settled against limits and budget once known.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.usage import Usage
from modelport.errors import UnsupportedOperation
from modelport.inference.relay import StreamRelay
from modelport.policy.access import AccessPolicy, Ticket
from modelport.policy.keys import Principal
from modelport.protocol.openai.request import (
    client_wants_usage,
    estimate_tokens,
    for_target,
    requested_route,
    wants_stream,
)
from modelport.providers.base import UpstreamReply
from modelport.routing.table import Route, RouteTable, Target

_CAPTURE_LIMIT = 64 * 1024
COST_HEADER = b"x-modelport-cost-usd"


class ProxyService:
    def __init__(self, routes: RouteTable, access: AccessPolicy) -> None:
        self._routes = routes
        self._access = access

    def _resolve(self, body: dict[str, Any], ctx: RequestContext) -> tuple[Route, Target]:
        route = self._routes.get(requested_route(body))
        ctx.route = route.name
        target = route.select()
        ctx.target = target.label
        return route, target

    def _admit(
        self,
        operation: Operation,
        body: dict[str, Any],
        route: Route,
        target: Target,
        principal: Principal | None,
        ctx: RequestContext,
    ) -> Ticket | None:
        self._access.authorize(principal, route.settings)
        ctx.environment = route.settings.environment
        embedding = operation is Operation.EMBEDDING
        ticket = self._access.admit(
            principal, route.settings, target.price,
            lambda: estimate_tokens(body, embedding=embedding),
        )
        if ticket is not None:
            ctx.response_headers.extend(
                (k.lower().encode(), v.encode()) for k, v in ticket.headers().items()
            )
        return ticket

    async def call(
        self,
        operation: Operation,
        body: dict[str, Any],
        raw: bytes,
        ctx: RequestContext,
        principal: Principal | None = None,
    ) -> UpstreamReply | StreamRelay:
        """Serve one request: a whole reply, or a relay for a stream that has begun."""
        ctx.operation = operation
        stream = wants_stream(body)
        route, target = self._resolve(body, ctx)
        if stream and not operation.streamable:
            raise UnsupportedOperation(
                f"Streaming is not available for {operation.value} requests.", param="stream"
            )
        strip_usage = stream and not client_wants_usage(body)  # may raise: before admitting
        ticket = self._admit(operation, body, route, target, principal, ctx)
        if route.settings.capture:
            ctx.request_body = raw[:_CAPTURE_LIMIT]
        if stream:
            return await self._open_stream(operation, body, target, ctx, ticket, strip_usage)
        payload = for_target(body, target.model, stream_usage=False)
        started = time.perf_counter()
        reply = None
        try:
            reply = await target.provider.send(operation, payload)
        finally:
            ctx.upstream_s = time.perf_counter() - started
            if reply is not None and reply.ok:
                ctx.usage = _reply_usage(reply.body)
                if ctx.usage is not None:
                    ctx.cost_usd = target.price.cost(ctx.usage)
                    ctx.response_headers.append((COST_HEADER, f"{ctx.cost_usd:.6f}".encode()))
            if ticket is not None:
                ticket.finish(ctx.usage, ctx.cost_usd)
        if route.settings.capture:
            ctx.response_body = reply.body[:_CAPTURE_LIMIT]
        return reply

    async def _open_stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        target: Target,
        ctx: RequestContext,
        ticket: Ticket | None,
        strip: bool,
    ) -> UpstreamReply | StreamRelay:
        ctx.stream = True
        started = time.perf_counter()
        try:
            payload = for_target(body, target.model, stream_usage=True)
            opened = await target.provider.open_stream(operation, payload)
        except BaseException:
            ctx.upstream_s = time.perf_counter() - started
            if ticket is not None:
                ticket.finish(None, None)
            raise
        if isinstance(opened, UpstreamReply):
            ctx.upstream_s = time.perf_counter() - started
            if ticket is not None:
                ticket.finish(None, None)
            return opened
        return StreamRelay(opened, ctx, started=started, strip_usage_chunk=strip,
                           price=target.price, ticket=ticket)


def _reply_usage(body: bytes) -> Usage | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
