"""OpenTelemetry traces: the spans of a request and their parents, a caller's trace continued
and passed on to the provider, nothing at all with tracing off, and the OTEL_* variables.

Most tests hand the app an in-memory exporter; one sends spans over OTLP/HTTP to a fake
collector, as ``OTEL_TRACES_EXPORTER=otlp`` does in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelport.app import build_app
from modelport.config import Settings, load_settings, validate_file
from modelport.config.settings import TracingSettings
from modelport.errors import ConfigError
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway, basic_config, write_config
from tests.integration.access_setup import KEY_ALL, access_config, access_env, bearer

ON = TracingSettings(enabled=True)
CHAT_PATH = "/v1/chat/completions"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
Start = Callable[..., httpx.Client]


class TracedGateway(InProcessGateway):
    """``InProcessGateway`` whose app also hands every span to ``exporter``."""

    def __init__(self, settings: Settings, exporter: InMemorySpanExporter) -> None:
        super().__init__(settings)
        config = uvicorn.Config(
            build_app(settings, self.access, trace_exporter=exporter), host="127.0.0.1",
            port=self.port, loop="asyncio", http="httptools", lifespan="on",
            access_log=False, log_config=None,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def start(tmp_path: Path, exporter: InMemorySpanExporter) -> Iterator[Start]:
    """Start a gateway on a config; tracing as ``tracing`` says (on, by default)."""
    opened: list[tuple[InProcessGateway, httpx.Client]] = []

    def run(config: dict[str, Any], env: dict[str, str],
            tracing: TracingSettings = ON) -> httpx.Client:
        settings = load_settings(write_config(tmp_path / "modelport.yaml", config), env)
        gw = TracedGateway(replace(settings, tracing=tracing), exporter).start()
        client = httpx.Client(base_url=gw.url, timeout=10)
        opened.append((gw, client))
        return client

    yield run
    for gw, client in opened:
        client.close()
        gw.stop()


def chat(route: str = "support-summary", **extra: Any) -> dict[str, Any]:
    return {"model": route, "messages": [{"role": "user", "content": "hi"}], **extra}


def finished(exporter: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    """The ended spans called ``name``, once there are ``count`` (the request's own span
    ends just after its last byte was sent, so it may trail the response a little)."""
    deadline = time.monotonic() + 5
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(spans) >= count or time.monotonic() > deadline:
            return sorted(spans, key=lambda s: s.start_time or 0)
        time.sleep(0.01)


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = finished(exporter, name)
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def traceparent(span: ReadableSpan) -> str:
    c = span.context
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"


def traceparent_of(seen_headers: dict[str, str]) -> str | None:
    return {k.lower(): v for k, v in seen_headers.items()}.get("traceparent")


def test_a_chat_is_a_server_span_with_admission_attempt_and_ledger_children(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(access_config(upstream.base_url, sqlite_url), access_env())
    r = client.post(CHAT_PATH, json=chat("r1"), headers=bearer(KEY_ALL))
    assert r.status_code == 200, r.text

    server = only(exporter, "POST /v1/chat/completions")
    assert server.kind is SpanKind.SERVER and server.parent is None
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST", "url.path": CHAT_PATH, "http.route": CHAT_PATH,
        "http.response.status_code": 200, "modelport.request_id": r.headers["x-request-id"],
        "modelport.route": "r1", "modelport.target": "upstream-a/m1",
        "modelport.key_id": "cfg_all-prod", "modelport.attempts": 1, "modelport.stream": False,
    }
    assert server.status.status_code is StatusCode.UNSET
    children = [only(exporter, n) for n in ("modelport.admission", "modelport.attempt",
                                              "modelport.ledger")]
    admission, attempt, ledger = children
    for child in children:
        assert child.context.trace_id == server.context.trace_id
        assert parent_id(child) == server.context.span_id
        assert server.start_time <= child.start_time  # type: ignore[operator]
        assert child.end_time <= server.end_time  # type: ignore[operator]
    assert admission.attributes == {"modelport.route": "r1"}
    assert attempt.kind is SpanKind.CLIENT
    assert dict(attempt.attributes or {}) == {
        "modelport.target": "upstream-a/m1", "modelport.attempt": 1,
        "modelport.status": 200, "modelport.outcome": "ok"}
    assert admission.end_time <= attempt.start_time <= ledger.start_time  # type: ignore[operator]
    assert len(exporter.get_finished_spans()) == 4


def test_a_refused_admission_marks_its_span_and_the_request_span(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(access_config(upstream.base_url, sqlite_url), access_env())
    r = client.post(CHAT_PATH, json=chat("rdev"), headers=bearer(KEY_ALL))
    assert r.status_code == 403, r.text
    admission = only(exporter, "modelport.admission")
    assert admission.status.status_code is StatusCode.ERROR
    assert admission.attributes is not None
    assert admission.attributes["error.type"] == r.json()["error"]["code"]
    server = only(exporter, "POST /v1/chat/completions")
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 403
    assert server.attributes["modelport.error_code"] == r.json()["error"]["code"]
    assert server.status.status_code is StatusCode.UNSET  # a client error, not the server's
    assert finished(exporter, "modelport.attempt") == []
    assert upstream.requests == []


def test_a_retried_then_fallen_back_request_has_one_attempt_span_per_call(
    start: Start, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    a, b, c = FakeUpstream().start(), FakeUpstream().start(), FakeUpstream().start()
    try:
        a.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
        b.enqueue(Reply(status=429, body={"error": {"message": "slow down"}}))
        config = {
            "store": {"url": sqlite_url, "flush_interval_s": 0.05},
            "providers": {name: {"kind": "openai", "base_url": fake.base_url}
                          for name, fake in (("a", a), ("b", b), ("c", c))},
            "routes": {
                "r": {"targets": [{"provider": "a", "model": "m1"},
                                  {"provider": "b", "model": "m2"}],
                      "fallback_routes": ["safe"]},
                "safe": {"targets": [{"provider": "c", "model": "m3"}]},
            },
        }
        client = start(config, {})
        r = client.post(CHAT_PATH, json=chat("r"))
        assert r.status_code == 200, r.text
        assert r.headers["x-modelport-target"] == "c/m3"

        attempts = finished(exporter, "modelport.attempt", 3)
        described = [(s.attributes or {}).get(k) for s in attempts
                     for k in ("modelport.target", "modelport.attempt", "modelport.outcome",
                               "modelport.status")]
        # statuses as the ledger has them: Modelport's 502 for the provider's 500
        assert described == ["a/m1", 1, "server_error", 502, "b/m2", 2, "rate_limited", 429,
                             "c/m3", 3, "ok", 200]
        assert [s.status.status_code for s in attempts] == [
            StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
        server = only(exporter, "POST /v1/chat/completions")
        assert {parent_id(s) for s in attempts} == {server.context.span_id}
        assert server.attributes is not None
        assert server.attributes["modelport.attempts"] == 3
        assert server.attributes["modelport.target"] == "c/m3"
        # each provider call names its own attempt span as the parent
        sent = [traceparent_of(fake.requests[0].headers) for fake in (a, b, c)]
        assert sent == [traceparent(s) for s in attempts]
    finally:
        for fake in (a, b, c):
            fake.stop()


def test_a_wait_for_a_capped_target_is_a_queue_span(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["routes"]["support-summary"]["targets"][0].update(max_concurrency=1, max_queue=1)
    client = start(config, {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    upstream.enqueue(Reply(delay_s=0.6))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, CHAT_PATH, json=chat())
        time.sleep(0.1)  # the first holds the only slot
        second = pool.submit(client.post, CHAT_PATH, json=chat())
        assert first.result().status_code == second.result().status_code == 200
    queued = finished(exporter, "modelport.queue", 2)
    servers = finished(exporter, "POST /v1/chat/completions", 2)
    assert len(queued) == 2
    assert {parent_id(q) for q in queued} == {s.context.span_id for s in servers}
    assert all((q.attributes or {}).get("modelport.target") == "upstream-a/gpt-4o-mini"
               for q in queued)
    waits = [(q.end_time or 0) - (q.start_time or 0) for q in queued]
    assert waits[0] < 0.1e9 < 0.2e9 < waits[1]


def test_an_incoming_traceparent_is_continued_and_passed_to_the_provider(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(basic_config(upstream.base_url, sqlite_url), {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    r = client.post(CHAT_PATH, json=chat(), headers={
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "vendor=opaque"})
    assert r.status_code == 200, r.text

    server = only(exporter, "POST /v1/chat/completions")
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    attempt = only(exporter, "modelport.attempt")
    assert attempt.context.trace_id == server.context.trace_id
    headers = {k.lower(): v for k, v in upstream.requests[0].headers.items()}
    assert headers["traceparent"] == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"
    assert headers["tracestate"] == "vendor=opaque"


def test_an_unsampled_caller_gets_no_recorded_spans_but_its_trace_goes_on(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(basic_config(upstream.base_url, sqlite_url), {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    r = client.post(CHAT_PATH, json=chat(),
                    headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert r.status_code == 200, r.text
    sent = traceparent_of(upstream.requests[0].headers)
    assert sent is not None and sent.startswith(f"00-{TRACE_ID}-") and sent.endswith("-00")
    time.sleep(0.1)
    assert exporter.get_finished_spans() == ()


def test_with_tracing_off_there_are_no_spans_and_no_traceparent_to_the_provider(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(basic_config(upstream.base_url, sqlite_url), {"UPSTREAM_A_KEY": UPSTREAM_KEY},
                   tracing=TracingSettings())
    plain = client.post(CHAT_PATH, json=chat())
    traced_caller = client.post(CHAT_PATH, json=chat(),
                                headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert plain.status_code == traced_caller.status_code == 200
    assert [traceparent_of(seen.headers) for seen in upstream.requests] == [None, None]
    time.sleep(0.1)  # the request's span would end just after its response
    assert exporter.get_finished_spans() == ()


def test_a_streamed_request_span_ends_after_the_stream_and_its_attempt_when_it_opened(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(basic_config(upstream.base_url, sqlite_url), {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], chunk_interval_s=0.2))
    with client.stream("POST", CHAT_PATH, json=chat(stream=True)) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: {"))
        # the first chunk is out: the attempt span has ended, the request's has not
        assert len(finished(exporter, "modelport.attempt")) == 1
        assert sorted(s.name for s in exporter.get_finished_spans()) == [
            "modelport.admission", "modelport.attempt"]
        rest = list(lines)
    assert "data: [DONE]" in rest
    server = only(exporter, "POST /v1/chat/completions")
    attempt = only(exporter, "modelport.attempt")
    assert server.attributes is not None and server.attributes["modelport.stream"] is True
    assert server.end_time - attempt.end_time > 0.3e9  # type: ignore[operator]
    assert parent_id(only(exporter, "modelport.ledger")) == server.context.span_id


def test_spans_are_named_after_the_route_template_and_an_unmatched_path_after_its_method(
    start: Start, upstream: FakeUpstream, sqlite_url: str, exporter: InMemorySpanExporter
) -> None:
    client = start(basic_config(upstream.base_url, sqlite_url), {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    assert client.get("/v1/models/support-summary").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    model = only(exporter, "GET /v1/models/{model:path}")
    assert model.attributes is not None
    assert model.attributes["http.route"] == "/v1/models/{model:path}"
    assert model.attributes["url.path"] == "/v1/models/support-summary"
    unmatched = only(exporter, "GET")
    assert unmatched.attributes is not None and "http.route" not in unmatched.attributes
    assert unmatched.attributes["http.response.status_code"] == 404


# -- configuration: the OTEL_* variables --------------------------------------------------


def _settings(tmp_path: Path, env: dict[str, str]) -> TracingSettings:
    config = basic_config("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path}/l.db")
    path = write_config(tmp_path / "modelport.yaml", config)
    return load_settings(path, {"UPSTREAM_A_KEY": "k", **env}).tracing


def test_tracing_is_off_unless_an_exporter_is_named(tmp_path: Path) -> None:
    assert _settings(tmp_path, {}).enabled is False
    assert _settings(tmp_path, {"OTEL_TRACES_EXPORTER": "none"}).enabled is False
    assert _settings(tmp_path, {"OTEL_TRACES_EXPORTER": "console",
                                "OTEL_SDK_DISABLED": "true"}).enabled is False
    on = _settings(tmp_path, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"})
    assert on.enabled is True and on.exporters == ("console",)
    assert on.service_name == "modelport" and on.sampler == "parentbased_always_on"


def test_the_otel_variables_are_read_as_the_specification_says(tmp_path: Path) -> None:
    tracing = _settings(tmp_path, {
        "OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_SERVICE_NAME": "gw-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=ignored",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret%3Dvalue,X-Team=ml",
    })
    assert tracing.exporters == ("otlp", "console")
    assert tracing.service_name == "gw-eu"
    assert tracing.resource_attributes["deployment.environment"] == "prod"
    assert (tracing.sampler, tracing.sampler_ratio) == ("parentbased_traceidratio", 0.25)
    assert tracing.otlp_endpoint == "http://collector:4318/v1/traces"
    assert {k: v.reveal() for k, v in tracing.otlp_headers.items()} == {
        "api-key": "s3cret=value", "x-team": "ml"}
    assert "s3cret" not in repr(tracing)
    own = _settings(tmp_path, {"OTEL_TRACES_EXPORTER": "otlp",
                               "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
                               "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/t"})
    assert own.otlp_endpoint == "https://c.example/t"


def test_bad_otel_values_are_reported_together_and_never_show_a_header(
    tmp_path: Path,
) -> None:
    config = basic_config("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path}/l.db")
    path = write_config(tmp_path / "modelport.yaml", config)
    problems = validate_file(path, {
        "UPSTREAM_A_KEY": "k", "OTEL_TRACES_EXPORTER": "otlp,zipkin",
        "OTEL_TRACES_SAMPLER": "sometimes", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=fine,Bearer-tok3n-no-equals",
    })
    assert problems == [
        "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin' (one of: otlp, console, none)",
        "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, not 'grpc'",
        "OTEL_TRACES_SAMPLER: unknown sampler 'sometimes' (one of: always_on, always_off, "
        "traceidratio, parentbased_always_on, parentbased_always_off, "
        "parentbased_traceidratio)",
        "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http:// or https:// URL",
    ]
    for env in ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio",
                 "OTEL_TRACES_SAMPLER_ARG": "2"},
                {"OTEL_SDK_DISABLED": "maybe"}):
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {"UPSTREAM_A_KEY": "k", **env})
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(("OTEL_TRACES_SAMPLER_ARG: must be a number",
                                                    "OTEL_SDK_DISABLED: must be true or false"))


class _Collector:
    """A fake OTLP/HTTP collector: keeps the body and headers of every export."""

    def __init__(self) -> None:
        self.exports: list[tuple[dict[str, str], bytes]] = []
        exports = self.exports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                exports.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_otlp_export_reaches_the_collector_with_its_headers_and_service_name(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    collector = _Collector()
    try:
        path = write_config(tmp_path / "modelport.yaml",
                            basic_config(upstream.base_url, sqlite_url))
        settings = load_settings(path, {
            "UPSTREAM_A_KEY": UPSTREAM_KEY, "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_SERVICE_NAME": "gw-test", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=k%201"})
        gw = InProcessGateway(settings).start()
        try:
            r = httpx.post(f"{gw.url}{CHAT_PATH}", json=chat(), timeout=10)
            assert r.status_code == 200, r.text
        finally:
            gw.stop()  # shuts the tracer provider down, which flushes the batch
        assert collector.exports, "nothing was exported"
        names, services = [], set()
        for headers, body in collector.exports:
            assert headers["x-collector-key"] == "k 1"
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                services |= {a.value.string_value for a in resource_spans.resource.attributes
                             if a.key == "service.name"}
                names += [s.name for scope in resource_spans.scope_spans for s in scope.spans]
        assert services == {"gw-test"}
        assert sorted(names) == ["POST /v1/chat/completions", "modelport.admission",
                                 "modelport.attempt", "modelport.ledger"]
    finally:
        collector.stop()
