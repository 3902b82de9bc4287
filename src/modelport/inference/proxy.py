"""Proxying an OpenAI-style call to the route's target, streaming or not.

The body is parsed once by the caller; here the route is resolved, the model name is
swapped for the target's, and the provider is called. Only the usage object of the reply is
read; the reply's bytes are passed back untouched.
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
from modelport.protocol.openai.request import (
    client_wants_usage,
    for_target,
    requested_route,
    wants_stream,
)
from modelport.providers.base import UpstreamReply
from modelport.routing.table import Route, RouteTable, Target

_CAPTURE_LIMIT = 64 * 1024


class ProxyService:
    def __init__(self, routes: RouteTable) -> None:
        self._routes = routes

    def _resolve(self, body: dict[str, Any], ctx: RequestContext) -> tuple[Route, Target]:
        route = self._routes.get(requested_route(body))
        ctx.route = route.name
        target = route.select()
        ctx.target = target.label
        return route, target

    async def call(
        self, operation: Operation, body: dict[str, Any], raw: bytes, ctx: RequestContext
    ) -> UpstreamReply | StreamRelay:
        """Serve one request: a whole reply, or a relay for a stream that has begun."""
        ctx.operation = operation
        stream = wants_stream(body)
        route, target = self._resolve(body, ctx)
        if route.settings.capture:
            ctx.request_body = raw[:_CAPTURE_LIMIT]
        if stream:
            if not operation.streamable:
                raise UnsupportedOperation(
                    f"Streaming is not available for {operation.value} requests.",
                    param="stream",
                )
            return await self._open_stream(operation, body, target, ctx)
        payload = for_target(body, target.model, stream_usage=False)
        started = time.perf_counter()
        try:
            reply = await target.provider.send(operation, payload)
        finally:
            ctx.upstream_s = time.perf_counter() - started
        if reply.ok:
            ctx.usage = _reply_usage(reply.body)
        if route.settings.capture:
            ctx.response_body = reply.body[:_CAPTURE_LIMIT]
        return reply

    async def _open_stream(
        self, operation: Operation, body: dict[str, Any], target: Target, ctx: RequestContext
    ) -> UpstreamReply | StreamRelay:
        ctx.stream = True
        strip = not client_wants_usage(body)
        payload = for_target(body, target.model, stream_usage=True)
        started = time.perf_counter()
        try:
            opened = await target.provider.open_stream(operation, payload)
        except BaseException:
            ctx.upstream_s = time.perf_counter() - started
            raise
        if isinstance(opened, UpstreamReply):
            ctx.upstream_s = time.perf_counter() - started
            return opened
        return StreamRelay(opened, ctx, started=started, strip_usage_chunk=strip)


def _reply_usage(body: bytes) -> Usage | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
