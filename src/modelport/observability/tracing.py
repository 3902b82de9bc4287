"""OpenTelemetry traces: one tracer provider per app, and the shape of Modelport's spans.

``build_tracing`` turns ``TracingSettings`` into a ``Tracing`` (exporters, sampler, resource),
or None when tracing is off: callers hold ``Tracing | None`` and test it once per hook, so
that a gateway without tracing builds no span, attaches no context and parses no header.
With tracing on, a request is one server span (continuing an incoming W3C ``traceparent``)
with leaf spans for admission, each upstream attempt and the ledger hand-off; the attempt
span is the current span while the provider is called, so that the provider passes it on.

It never sets OpenTelemetry's global tracer provider: several apps may live in one process
(the tests build many), each with its own. It reads no environment variable of its own
(``config/load.py`` does); the SDK's exporters and batch processor still read their own
tuning variables (timeouts, compression, queue sizes), as the OpenTelemetry SDK documents.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from contextvars import Token
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export import SpanExporter as SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelport import __version__
from modelport.config.settings import TracingSettings
from modelport.core.context import RequestContext
from modelport.errors import ModelportError

_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL
_ERROR = StatusCode.ERROR


def build_tracing(
    settings: TracingSettings, exporter: SpanExporter | None = None
) -> Tracing | None:
    """The app's tracing, or None when it is off. ``exporter`` (tests: an in-memory one)
    receives every span as it ends, besides the configured exporters; it does not turn
    tracing on by itself."""
    if not settings.enabled:
        return None
    resource = Resource({**settings.resource_attributes, "service.name": settings.service_name,
                         "service.version": __version__})
    provider = TracerProvider(resource=resource, sampler=_sampler(settings),
                              shutdown_on_exit=False)
    for name in settings.exporters:
        provider.add_span_processor(_processor(name, settings))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider)


def _sampler(settings: TracingSettings) -> Sampler:
    name = settings.sampler.removeprefix("parentbased_")
    root: Sampler = ALWAYS_ON
    if name == "always_off":
        root = ALWAYS_OFF
    elif name == "traceidratio":
        root = TraceIdRatioBased(settings.sampler_ratio)
    return ParentBased(root) if settings.sampler.startswith("parentbased_") else root


def _processor(name: str, settings: TracingSettings) -> SpanProcessor:
    if name == "console":  # a debugging aid: each span printed as it ends
        return SimpleSpanProcessor(ConsoleSpanExporter())
    # Imported only when used: the OTLP exporter is the optional extra ``otel``.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {k: v.reveal() for k, v in settings.otlp_headers.items()}
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint,
                                               headers=headers))


class Tracing:
    """One app's tracer provider, its tracer and the W3C Trace Context propagator."""

    __slots__ = ("_propagator", "_provider", "tracer")

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self.tracer = provider.get_tracer("modelport", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def shutdown(self) -> None:
        """Export what is buffered, then stop the exporters."""
        self._provider.shutdown()

    def start_request(
        self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> RequestSpan:
        """The server span of one HTTP request, current until ``RequestSpan.end``; its
        parent is the caller's span when the request carries a ``traceparent``."""
        carrier: dict[str, str] = {}
        for name, value in headers:
            if name == b"traceparent" or name == b"tracestate":
                key = name.decode()
                text = value.decode("latin-1")
                carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
        parent = self._propagator.extract(carrier, Context()) if carrier else Context()
        span = self.tracer.start_span(
            method, parent, kind=_SERVER,
            attributes={"http.request.method": method, "url.path": path})
        current = trace.set_span_in_context(span, parent)
        return RequestSpan(self.tracer, span, current, otel_context.attach(current))

    def span(self, name: str, attributes: dict[str, str] | None = None) -> Span:
        """A child of the current span (the request's), to be ended by the caller."""
        return self.tracer.start_span(name, kind=_INTERNAL, attributes=attributes)

    def attempt(self, target: str, number: int) -> AttemptSpan:
        """The span of one call to a provider: ``with`` it around the call."""
        span = self.tracer.start_span("modelport.attempt", kind=_CLIENT, attributes={
            "modelport.target": target, "modelport.attempt": number})
        return AttemptSpan(span)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) for the current span to outgoing headers."""
        self._propagator.inject(headers)


class RequestSpan:
    """The server span of one request, and its context made current for the request's task."""

    __slots__ = ("_context", "_span", "_token", "_tracer")

    def __init__(
        self, tracer: trace.Tracer, span: Span, current: Context, token: Token[Context]
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._context = current
        self._token = token

    def ledger(self) -> Span:
        """The span around the recorder's hand-off to the ledger writer."""
        return self._tracer.start_span("modelport.ledger", self._context, kind=_INTERNAL)

    def end(self, ctx: RequestContext, route: str | None) -> None:
        """Name the span after its route, note what the request became, and end it. Runs in
        the task that started it, which makes the context detach cleanly."""
        span = self._span
        otel_context.detach(self._token)
        if span.is_recording():
            method = ctx.method
            if route is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attributes(_request_attributes(ctx))
            if ctx.status >= 500 or not ctx.status:
                span.set_status(Status(_ERROR, ctx.error_code))
        span.end()


def _request_attributes(ctx: RequestContext) -> dict[str, str | int | bool]:
    attributes: dict[str, str | int | bool] = {"modelport.request_id": ctx.request_id}
    if ctx.status:
        attributes["http.response.status_code"] = ctx.status
    if ctx.route is not None:
        attributes["modelport.route"] = ctx.route
        attributes["modelport.attempts"] = len(ctx.attempts)
        attributes["modelport.stream"] = ctx.stream
    if ctx.target is not None:
        attributes["modelport.target"] = ctx.target
    if ctx.key_id is not None:
        attributes["modelport.key_id"] = ctx.key_id
    if ctx.error_code is not None:
        attributes["modelport.error_code"] = ctx.error_code
        if ctx.status >= 500:
            attributes["error.type"] = ctx.error_code
    if ctx.client_disconnected:
        attributes["modelport.client_disconnected"] = True
    return attributes


class AttemptSpan:
    """One provider call: the current span inside ``with``, so that the provider's
    outgoing request names it as the parent."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: Token[Context] | None = None

    def __enter__(self) -> AttemptSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def outcome(self, status: int, error_class: str | None) -> None:
        """What the attempt came to, as the ledger records it: the status (the provider's
        for an answer, Modelport's for a failure: 502, 504, 429), and the error class of a
        failure (the class the route's ``fallback_on`` rules name)."""
        span = self._span
        span.set_attribute("modelport.status", status)
        outcome = error_class or ("ok" if status < 400 else "client_error")
        span.set_attribute("modelport.outcome", outcome)
        if error_class is not None:
            span.set_attribute("error.type", error_class)
            span.set_status(Status(_ERROR, error_class))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if exc is not None:  # cancelled, or a bug: the attempt recorded no outcome
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(Status(_ERROR, type(exc).__name__))
        self._span.end()


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End a leaf span, marked failed with the error's code when ``error`` is given."""
    if error is not None:
        kind = error.code if isinstance(error, ModelportError) else type(error).__name__
        span.set_attribute("error.type", kind)
        span.set_status(Status(_ERROR, kind))
    span.end()
