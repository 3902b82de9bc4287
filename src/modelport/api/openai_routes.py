"""The OpenAI-compatible endpoints under ``/v1``, as plain ASGI callables.

Each endpoint reads the body within the size limit, parses it once, and hands it to the
proxy use case; the answer goes back as bytes or as a stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import (
    DEFAULT_PRIORITY,
    HEADERS_KEY,
    header,
    headers_of,
    prefers_async,
    read_body,
    request_priority,
    request_timeout,
)
from modelport.api.middleware import CTX_KEY
from modelport.api.responses import response_start, send_bytes, send_json, send_stream
from modelport.api.services import STATE_KEY, Services, services_of
from modelport.batch.output import job_object
from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.errors import RequestError, ServiceUnavailable, UnknownRoute
from modelport.inference.idempotency import IdempotencyCache, Stored
from modelport.inference.proxy import Answer
from modelport.policy.keys import Principal
from modelport.protocol.openai.models import model_list, model_object
from modelport.protocol.openai.request import parse_body, requested_route, wants_stream
from modelport.providers.base import UpstreamReply


class InferenceEndpoint:
    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope[STATE_KEY]  # services_of(scope), without the call
        ctx = scope[CTX_KEY]
        ctx.recorded = True  # an inference use case: recorded from here on, a refusal too
        asked = scope.get(HEADERS_KEY) or headers_of(scope)  # the request's headers
        principal = None
        if services.access.auth_required:
            principal = services.access.authenticate(asked.get(b"authorization"))
            ctx.key_id = principal.key_id if principal is not None else None
        value = asked.get(b"x-request-timeout")
        timeout_s = None if value is None else request_timeout(value)
        value = asked.get(b"x-priority")
        priority = DEFAULT_PRIORITY if value is None else request_priority(value)
        if principal is not None:
            priority = min(priority, principal.priority)  # a key may lower it, never raise
        raw = await read_body(scope, receive, services.settings.server.max_body_bytes)
        body = parse_body(raw)
        value = asked.get(b"prefer")
        if value is not None and prefers_async(value):
            await _queue(services, scope, self.operation, body, principal, send)
            ctx.recorded = False  # recorded when it runs, as its job's line
            return

        idempotency_key = asked.get(b"idempotency-key")
        if idempotency_key is not None and body.get("stream") is not True:

            async def serve() -> Answer:
                return await services.proxy.call(self.operation, body, raw, ctx, principal,
                                                 timeout_s=timeout_s, priority=priority,
                                                 client_headers=scope["headers"])

            owner = principal.key_id if principal is not None else ""
            reply, headers = await _once(services.idempotency, owner, idempotency_key, ctx,
                                         serve)
            await send_bytes(send, reply.status, reply.body, reply.content_type, headers)
            return
        answer = await services.proxy.call(self.operation, body, raw, ctx, principal,
                                           timeout_s=timeout_s, priority=priority,
                                           client_headers=scope["headers"])
        result = answer.result
        if isinstance(result, UpstreamReply):  # send_bytes(...), inline
            await send(response_start(result.status, result.body, result.content_type,
                                      answer.headers))
            await send({"type": "http.response.body", "body": result.body})
        else:
            await send_stream(result, ctx, receive, send, answer.headers)


async def _queue(services: Services, scope: Scope, operation: Operation,
                 body: dict[str, Any], principal: Principal | None, send: Send) -> None:
    """``Prefer: respond-async``: checked as the request would be now (its route, the key's
    access to it), then queued as a job; 202 with its id and where to read the answer."""
    if services.batches is None:
        raise ServiceUnavailable("Queued requests are not available on this server.")
    if wants_stream(body):
        raise RequestError("A request sent with Prefer: respond-async cannot stream.",
                           param="stream")
    route = services.routes.get(requested_route(body))
    services.access.authorize(principal, route.settings)
    key = header(scope, b"idempotency-key")
    job, replayed = await services.batches.queue(
        principal.key_id if principal is not None else None, scope["path"],
        orjson.dumps(body).decode(), None if key is None else IdempotencyCache.check(key))
    headers = [(b"location", f"/v1/jobs/{job.id}".encode()),
               (b"preference-applied", b"respond-async"), (b"retry-after", b"1")]
    if replayed:
        headers.append((b"x-modelport-replayed", b"true"))
    await send_bytes(send, 202, orjson.dumps(job_object(job, None)), "application/json",
                     headers)


async def _once(
    cache: IdempotencyCache,
    owner: str,
    key: bytes,
    ctx: RequestContext,
    serve: Callable[[], Awaitable[Answer]],
) -> tuple[UpstreamReply, Sequence[tuple[bytes, bytes]]]:
    """Serve a request with an ``Idempotency-Key`` once; repeats get the first answer and
    its headers."""

    async def first() -> Stored:
        answer = await serve()
        assert isinstance(answer.result, UpstreamReply)  # the caller keeps streams out
        return Stored(answer.result, tuple(answer.headers), ctx.route, ctx.target)

    stored, replayed = await cache.run(owner, cache.check(key), first)
    if not replayed:
        return stored.reply, stored.headers
    ctx.route, ctx.target = stored.route, stored.target
    return stored.reply, (*stored.headers, (b"x-modelport-replayed", b"true"))


async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    principal = services.access.authenticate(header(scope, b"authorization"))
    entries = [
        (r.name, r.settings.owner)
        for r in services.routes
        if principal is None or principal.may_call(r.name, r.settings.environment)
    ]
    await send_json(send, model_list(entries, services.started_at))


async def get_model(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    principal = services.access.authenticate(header(scope, b"authorization"))
    route = services.routes.get(scope["path_params"]["model"])
    if principal is not None and not principal.may_call(route.name, route.settings.environment):
        raise UnknownRoute(route.name)  # a scoped key cannot learn which other routes exist
    await send_json(send, model_object(route.name, route.settings.owner, services.started_at))


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", InferenceEndpoint(Operation.CHAT), methods=["POST"]),
        Route("/v1/completions", InferenceEndpoint(Operation.COMPLETION), methods=["POST"]),
        Route("/v1/embeddings", InferenceEndpoint(Operation.EMBEDDING), methods=["POST"]),
        Route("/v1/models", AsgiEndpoint(list_models), methods=["GET"]),
        Route("/v1/models/{model:path}", AsgiEndpoint(get_model), methods=["GET"]),
    ]
