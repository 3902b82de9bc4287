"""The app's services: built in the lifespan, held in one frozen object, reached one way.

``build_services`` starts providers, the key ring and its sync, and the ledger writer, and
stops them again; request handlers reach the result through ``services_of(scope)``. There is
no module-level state.

One ``Services`` object serves one config version: applying another (``api.reload``) makes a
new one that shares everything long-lived (metrics, store, ledger, key ring, limiter state,
switches) and replaces the settings, providers, routes and what is built on them. Each
request is pinned to the object current when it arrived, and finishes on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from modelport import __version__
from modelport.batch.service import BatchService
from modelport.config.settings import Settings
from modelport.inference.canaries import CanaryKeeper
from modelport.inference.idempotency import IdempotencyCache
from modelport.inference.proxy import ProxyService
from modelport.inference.recorder import Recorder
from modelport.inference.reviews import ReviewQueue
from modelport.inference.shadow import ShadowRunner
from modelport.observability.access import AccessLog
from modelport.observability.masking import Masker
from modelport.observability.metrics import Metrics
from modelport.observability.tracing import SpanExporter, Tracing, build_tracing
from modelport.policy.access import AccessPolicy
from modelport.policy.setup import build_access, seed_budgets
from modelport.policy.switches import Switchboard
from modelport.policy.sync import KeySync
from modelport.providers import Provider, build_provider
from modelport.providers.openai import OpenAIProvider
from modelport.routing.table import RouteTable
from modelport.store.batches import BatchStore
from modelport.store.canaries import CanaryStore
from modelport.store.config_versions import ConfigVersionStore
from modelport.store.engine import make_engine, migrate
from modelport.store.keys import KeyStore
from modelport.store.ledger import LedgerWriter
from modelport.store.requests import RequestStore
from modelport.store.retention import BodyRetention
from modelport.store.reviews import ReviewStore
from modelport.store.switches import SwitchStore
from modelport.store.usage import UsageStore

if TYPE_CHECKING:
    from modelport.tensors.inference import TensorInference
    from modelport.tensors.service import TensorService

STATE_KEY = "modelport.services"  # a request's pinned Services (set by the middleware)
LIVE_KEY = "modelport.live"  # the lifespan's Live
log = logging.getLogger("modelport.services")


@dataclass(slots=True)
class Readiness:
    """Ready once the app serves and every local model has finished loading (a model that
    failed to load is reported, and its routes answer 503, but does not hold readiness)."""

    serving: bool = False
    loaded: bool = False

    @property
    def ready(self) -> bool:
        return self.serving and self.loaded


@dataclass(slots=True)
class Generation:
    """The config version a ``Services`` object serves, and its requests in flight (a
    provider a newer version dropped is closed once they are done)."""

    number: int | None = None  # its row in the store's config versions, once kept
    in_flight: int = 0


class ProviderSet:
    """Every provider this server started, each closed once: when the config versions that
    used it are done with it, or at shutdown."""

    def __init__(self) -> None:
        self._open: dict[int, Provider] = {}

    def add(self, providers: Mapping[str, Provider]) -> None:
        for provider in providers.values():
            self._open[id(provider)] = provider

    async def close(self, provider: Provider) -> None:
        if self._open.pop(id(provider), None) is not None:
            await provider.close()

    async def close_all(self) -> None:
        for provider in list(self._open.values()):
            await self.close(provider)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    metrics: Metrics
    providers: Mapping[str, Provider]
    routes: RouteTable
    proxy: ProxyService
    recorder: Recorder
    ledger: LedgerWriter
    access: AccessPolicy
    keys: KeyStore
    usage: UsageStore
    requests: RequestStore
    idempotency: IdempotencyCache
    masker: Masker = field(default_factory=Masker)  # captured bodies and feedback text
    tensors: TensorService | None = None
    tensor_inference: TensorInference | None = None  # the V2 inference use case
    tracing: Tracing | None = None  # None: tracing is off
    key_sync: KeySync | None = None
    switches: Switchboard = field(default_factory=Switchboard)  # kill switches that are off
    switch_store: SwitchStore | None = None
    canaries: CanaryKeeper | None = None
    shadows: ShadowRunner | None = None
    reviews: ReviewQueue | None = None  # the review queue (store.reviews)
    access_log: AccessLog | None = None
    retention: BodyRetention | None = None
    config_store: ConfigVersionStore | None = None
    batches: BatchService | None = None  # the Files and Batches APIs and the batch runner
    generation: Generation = field(default_factory=Generation)
    provider_set: ProviderSet = field(default_factory=ProviderSet)
    started_at: int = field(default_factory=lambda: int(time.time()))
    readiness: Readiness = field(default_factory=Readiness)
    # dashboard session id -> expiry (monotonic); read and written by dashboard.sessions only
    dashboard_sessions: dict[str, float] = field(default_factory=dict)
    # the dashboard sessions of reviewers (signed in with a reviewer's key): id -> key id
    dashboard_reviewers: dict[str, str] = field(default_factory=dict)
    # failed dashboard sign-ins per client address (dashboard.throttle)
    dashboard_failures: dict[str, deque[float]] = field(default_factory=dict)


@asynccontextmanager
async def build_services(
    settings: Settings, access_stream: BinaryIO | None = None,
    trace_exporter: SpanExporter | None = None,
) -> AsyncIterator[Services]:
    """Start everything the app needs; ``access_stream`` receives the request log, if any,
    and ``trace_exporter`` every span besides the configured exporters (when tracing is on)."""
    metrics = Metrics()
    metrics.info.labels(__version__, settings.config_version).set(1)
    providers = {name: build_provider(p, metrics) for name, p in settings.providers.items()}
    engine = make_engine(settings.store.url)
    ledger = LedgerWriter(settings.store, metrics, engine_factory=lambda _url: engine)
    keys, usage, requests = KeyStore(engine), UsageStore(engine), RequestStore(engine)
    retention = BodyRetention(requests, {
        r.name: r.retention_days for r in settings.routes.values()
        if r.capture and r.retention_days is not None})
    switches, switch_store = Switchboard(), SwitchStore(engine)
    access, key_sync = build_access(settings, keys, prepare=lambda: migrate(engine),
                                    switches=(switch_store, switches))
    access_log = None
    if access_stream is not None:
        access_log = AccessLog(access_stream, settings.secrets())
    async with AsyncExitStack() as stack:
        tracing = build_tracing(settings.tracing, trace_exporter)
        if tracing is not None:
            # Last out, so that it exports the spans of shutting down too; in a thread, as
            # it waits for the exporter (the SDK bounds that wait at 30 s).
            stack.push_async_callback(asyncio.to_thread, tracing.shutdown)
            for provider in providers.values():
                if isinstance(provider, OpenAIProvider):
                    provider.propagate_traces(tracing)
        tensors = None
        if settings.model_repository is not None:
            # Imported here: NumPy and the V2 codec cost ~12 MB that a server without tensor
            # models does not need.
            from modelport.tensors.service import TensorService

            tensors = TensorService(Path(settings.model_repository), metrics)
            stack.push_async_callback(tensors.close)
        provider_set = ProviderSet()
        provider_set.add(providers)
        stack.push_async_callback(provider_set.close_all)
        readiness = Readiness()
        # Side by side and in the background: local models load in their own processes,
        # each taking seconds, while the server already answers (their routes with 503
        # and Retry-After until they are loaded; readiness says which are loading).
        loading = asyncio.create_task(_load_runtimes(providers, tensors, readiness))
        stack.push_async_callback(_stop_loading, loading)
        stack.callback(engine.dispose)
        await ledger.start()
        stack.push_async_callback(ledger.stop)
        # Keys and each key's spend this period, read together once the store answers; with
        # keys configured the server is not ready before that (a key created over the admin
        # API would be refused, a budget overshot).
        key_sync.on_first_sync = lambda: seed_budgets(access, usage)
        await key_sync.start()
        stack.push_async_callback(key_sync.stop)
        await retention.start()
        stack.push_async_callback(retention.stop)
        if access_log is not None:
            await access_log.start()
            stack.push_async_callback(access_log.stop)
        routes = RouteTable(settings, providers, metrics)
        canaries, shadows = await _release_controls(stack, routes, engine, metrics, ledger,
                                                    key_sync)
        reviews = ReviewQueue(ReviewStore(engine), requests, metrics)
        stack.push_async_callback(reviews.close)
        masker = Masker(settings.secrets())
        recorder = Recorder(metrics, ledger, settings.config_version, access_log,
                            versions=model_versions(settings), masker=masker)
        services = Services(
            **serving(settings, providers, routes, access, recorder, masker, metrics=metrics,
                      tracing=tracing, switches=switches, shadows=shadows, tensors=tensors,
                      reviews=reviews),
            metrics=metrics,
            ledger=ledger,
            keys=keys,
            usage=usage,
            requests=requests,
            idempotency=IdempotencyCache(settings.server.idempotency_ttl_s),
            tensors=tensors,
            tracing=tracing,
            readiness=readiness,
            key_sync=key_sync,
            switches=switches,
            switch_store=switch_store,
            canaries=canaries,
            shadows=shadows,
            reviews=reviews,
            access_log=access_log,
            retention=retention,
            config_store=ConfigVersionStore(engine),
            batches=BatchService(BatchStore(engine), settings.batch),
            provider_set=provider_set,
        )
        readiness.serving = True
        try:
            yield services
        finally:
            readiness.serving = False


def serving(
    settings: Settings, providers: Mapping[str, Provider], routes: RouteTable,
    access: AccessPolicy, recorder: Recorder, masker: Masker, *, metrics: Metrics,
    tracing: Tracing | None, switches: Switchboard, shadows: ShadowRunner | None,
    tensors: TensorService | None, reviews: ReviewQueue | None = None,
) -> dict[str, Any]:
    """The parts of ``Services`` that belong to one config version."""
    tensor_inference = None
    if tensors is not None:
        from modelport.tensors.inference import TensorInference

        tensor_inference = TensorInference(tensors, access, switches)
    return {
        "settings": settings, "providers": providers, "routes": routes, "access": access,
        "recorder": recorder, "masker": masker, "tensor_inference": tensor_inference,
        "proxy": ProxyService(routes, access, metrics, tracing=tracing, switches=switches,
                              models=settings.models, shadows=shadows,
                              config_version=settings.config_version, reviews=reviews),
    }


async def _release_controls(
    stack: AsyncExitStack, routes: RouteTable, engine: Any, metrics: Metrics,
    ledger: LedgerWriter, key_sync: KeySync,
) -> tuple[CanaryKeeper, ShadowRunner]:
    """The routes' canaries, kept in step with the store on every revision (a canary
    rolled back before a restart stays back), and the shadow traffic runner."""
    canaries = CanaryKeeper(routes, CanaryStore(engine), metrics)
    shadows = ShadowRunner(ledger.submit, metrics)
    stack.push_async_callback(shadows.close)
    stack.push_async_callback(canaries.close)
    key_sync.on_revision = canaries.refresh
    await canaries.refresh()
    return canaries, shadows


async def _load_runtimes(providers: Mapping[str, Provider], tensors: TensorService | None,
                         readiness: Readiness) -> None:
    results = await asyncio.gather(*(provider.start() for provider in providers.values()),
                                   *([tensors.start()] if tensors is not None else []),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):  # that runtime stays unavailable; the rest serve
            log.error("runtime_start_failed", exc_info=result)
    readiness.loaded = True


async def _stop_loading(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def model_versions(settings: Settings) -> dict[tuple[str, str], str]:
    """Each (route, target label) with the model version that answers there."""
    return {(route.name, t.label): t.model_version
            for route in settings.routes.values() for t in route.targets}


class Live:
    """The services of the config version in force; applying another swaps ``current``.
    The request middleware reads it once per request and pins the request to it."""

    __slots__ = ("current",)

    def __init__(self, services: Services) -> None:
        self.current = services


def services_of(scope: Mapping[str, Any]) -> Services:
    services: Services = scope[STATE_KEY]  # pinned by the request middleware
    return services
