"""The request middleware: request ids, response headers, the one place errors are rendered.

A plain ASGI class wrapped around the router. For every HTTP request it creates the
``RequestContext``, takes or makes the ``X-Request-ID``, adds the Modelport headers to the
response, renders a ``ModelportError`` raised before the response started in OpenAI's
error shape, turns anything else into a 500 logged once with its traceback, and hands the
finished context of an inference use case (one that set ``ctx.recorded``, refusals
included) to the recorder. With tracing on, it also opens the request's server span
and ends it after the response's last byte (a stream's too) and the recorder's hand-off.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Awaitable
from typing import Any

from starlette.exceptions import HTTPException

from modelport.api.body import headers_of
from modelport.api.origins import OriginGuard
from modelport.api.services import LIVE_KEY, STATE_KEY, Services
from modelport.core.context import RequestContext
from modelport.errors import (
    AuthError,
    ClientDisconnected,
    InternalError,
    MethodNotAllowed,
    ModelportError,
    NotFound,
    RequestError,
)
from modelport.observability.tracing import RequestSpan
from modelport.protocol.openai.errors import error_body
from modelport.protocol.v2_errors import render_error as render_v2_error

log = logging.getLogger("modelport.api")

CTX_KEY = "modelport.ctx"
_MAX_REQUEST_ID = 128
_JSON = (b"content-type", b"application/json")


class RequestIds:
    """Fresh request ids, time-ordered like UUIDv7: 48 bits of milliseconds then 80 random
    bits from a generator seeded once from the OS. Unique across replicas without a system
    call per request, and appended at the end of the ledger's index instead of scattered
    through it."""

    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = random.Random(os.urandom(32)).getrandbits

    def __call__(self) -> str:
        return ((int(time.time() * 1000) << 80) | self._bits(80)).to_bytes(16).hex()


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and all(0x20 <= b < 0x7F for b in value)


class RequestMiddleware:
    def __init__(self, app: Any, origins: OriginGuard | None = None) -> None:
        self.app = app
        self.origins = origins
        self.new_request_id = RequestIds()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Pinned: the whole request is served by the config version in force now.
        services = scope[STATE_KEY] = scope["state"][LIVE_KEY].current
        generation = services.generation
        incoming = headers_of(scope).get(b"x-request-id")
        bad_id = incoming is not None and incoming != b"" and not _valid_request_id(incoming)
        request_id = incoming.decode() if incoming and not bad_id else self.new_request_id()
        client = scope.get("client")
        ctx = RequestContext(
            request_id=request_id,
            method=scope["method"],
            path=scope["path"],
            client=client[0] if client else "",
        )
        scope[CTX_KEY] = ctx
        tracing = services.tracing
        span = None if tracing is None else tracing.start_request(
            ctx.method, ctx.path, scope["headers"])
        scope.setdefault("app", self)  # makes the router raise its 404/405 for us to render
        fixed = [
            (b"x-request-id", request_id.encode()),
            (b"x-modelport-config-version", services.settings.config_version.encode()),
        ]

        def send_with_headers(message: dict[str, Any]) -> Awaitable[None]:
            # returns ``send``'s coroutine rather than awaiting it: no frame of its own
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                headers = message.setdefault("headers", [])
                headers.extend(fixed)
                if ctx.route is not None:
                    headers.append((b"x-modelport-route", ctx.route.encode()))
                if ctx.target is not None:
                    headers.append((b"x-modelport-target", ctx.target.encode()))
                if ctx.response_headers:
                    headers.extend(ctx.response_headers)
            return send(message)  # type: ignore[no-any-return]

        in_flight = services.metrics.in_flight_now
        in_flight.value += 1.0  # a loop_metrics gauge: a number, updated without a call
        generation.in_flight += 1
        try:
            if bad_id:
                raise RequestError(
                    "X-Request-ID must be 1 to 128 printable ASCII characters.",
                    param="X-Request-ID",
                )
            if self.origins is not None:
                self.origins.check(scope)
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnected:
            ctx.status = ctx.status or 499
            ctx.client_disconnected = True
        except ModelportError as exc:
            await self._render(exc, ctx, send_with_headers)
        except HTTPException as exc:
            await self._render(_from_http_exception(exc), ctx, send_with_headers)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            await self._render(InternalError(request_id), ctx, send_with_headers)
        finally:
            in_flight.value -= 1.0
            generation.in_flight -= 1
            if span is None:
                if ctx.recorded:  # an inference use case, answered or refused
                    services.recorder.finish(ctx)
            else:
                _finish_traced(span, scope, ctx, services)

    async def _render(self, exc: ModelportError, ctx: RequestContext, send: Any) -> None:
        ctx.error_code = exc.code
        if ctx.status:
            return  # the response had started; a stream reports its own error event
        body = render_v2_error(exc.message) if ctx.path.startswith("/v2") else error_body(exc)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        headers.extend((k.lower().encode(), v.encode()) for k, v in exc.headers.items())
        if isinstance(exc, AuthError):
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _finish_traced(
    span: RequestSpan, scope: dict[str, Any], ctx: RequestContext, services: Services
) -> None:
    """The end of a traced request: the ledger hand-off in its own span, then the request's
    span, named after the route the request matched."""
    try:
        if ctx.recorded:
            ledger = span.ledger()
            try:
                services.recorder.finish(ctx)
            finally:
                ledger.end()
    finally:
        span.end(ctx, _route_template(scope))


def _route_template(scope: dict[str, Any]) -> str | None:
    """The route a request matched, as declared (``/v1/models/{model:path}``): Starlette's
    router notes its match; a fixed path, dispatched before the router, is its own route;
    None when nothing matched."""
    if "route" in scope:
        path = getattr(scope["route"], "path", None)
        return path if isinstance(path, str) else None
    return None if "router" in scope else str(scope["path"])


def _from_http_exception(exc: HTTPException) -> ModelportError:
    """The router's own 404/405, in the same error shape as everything else."""
    if exc.status_code == 405:
        return MethodNotAllowed("This method is not allowed on this path.",
                                allow=(exc.headers or {}).get("Allow"))
    return NotFound("There is nothing at this path.")
