"""``create_app(settings)``: the ASGI application.

Fixed-path dispatch in front of a Starlette router (no Starlette app object: its default
middleware would render errors a second way), wrapped in ``RequestMiddleware``. Services are
built in the router's lifespan.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

from starlette.routing import Route, Router

from modelport.api import (
    batches,
    feedback,
    health,
    openai_routes,
    openapi,
    reviews,
    tokens,
    v2_routes,
)
from modelport.api.asgi import Receive, Scope, Send
from modelport.api.dispatch import Dispatch
from modelport.api.middleware import RequestIds, RequestMiddleware
from modelport.api.origins import OriginGuard
from modelport.api.reload import RELOADER_KEY, ConfigReloader
from modelport.api.services import LIVE_KEY, Services, build_services
from modelport.batch.runner import BatchRunner
from modelport.config.settings import Settings
from modelport.errors import NotFound
from modelport.observability.tracing import SpanExporter

GC_THRESHOLDS = (5000, 20, 20)  # the cyclic collector's, while the app serves (see lifespan)


@asynccontextmanager
async def _batch_runner(services: Services, reloader: ConfigReloader) -> AsyncIterator[None]:
    """The batch runner, for as long as the app serves: each line runs on the config
    version in force when it starts."""
    if services.batches is None:
        yield
        return
    runner = BatchRunner(services.batches.store, lambda: reloader.live.current,
                         services.settings.batch, services.metrics, RequestIds())
    services.batches.runner = runner
    await runner.start()
    try:
        yield
    finally:
        await runner.stop()


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFound("There is nothing at this path.")


def create_app(
    settings: Settings,
    access_stream: BinaryIO | None = None,
    extra_routes: Sequence[Route] = (),
    trace_exporter: SpanExporter | None = None,
    reload_on_hangup: bool = False,
) -> RequestMiddleware:
    """The app; ``access_stream`` receives one JSON line per request (none when ``None``),
    ``trace_exporter`` every span when tracing is on (tests pass an in-memory one);
    ``reload_on_hangup``: ``SIGHUP`` re-reads the config file (``modelport serve``)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with build_services(settings, access_stream, trace_exporter) as services, \
                ConfigReloader.running(services, hangup=reload_on_hangup) as reloader:
            # Everything built so far lives as long as the process: take it out of the
            # collector's view so that full collections stay short under load (long pauses
            # here showed up as a 40 ms p99).
            gc.collect()
            gc.freeze()
            # A request makes and drops a few thousand objects, nearly all freed by their
            # reference counts; at the default threshold (700) the collector ran about twice
            # a request, each time walking the requests in flight: some 7% of a request's
            # instructions. At this one it runs every few requests; the cycles it finds
            # wait a little longer (docs/architecture.md, "The path of a request").
            thresholds = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLDS)
            try:
                async with _batch_runner(services, reloader):
                    yield {LIVE_KEY: reloader.live, RELOADER_KEY: reloader}
            finally:
                gc.set_threshold(*thresholds)

    router = Router(lifespan=lifespan, default=_not_found)
    routes = [*openai_routes.routes(), *tokens.routes(), *feedback.routes(),
              *reviews.routes(), *batches.routes(), *health.routes(),
              *openapi.routes(),
              *v2_routes.routes(), *extra_routes]
    return RequestMiddleware(Dispatch(routes, router), OriginGuard.of(settings))
