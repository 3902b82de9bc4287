"""Recorder.finish: metrics, one access log line and one ledger record per request."""

from __future__ import annotations

import io
import time

import orjson
import pytest

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.usage import Usage
from modelport.inference.recorder import Recorder
from modelport.observability.access import AccessLog
from modelport.observability.masking import Masker
from modelport.observability.metrics import Metrics
from modelport.store.ledger import LedgerRecord


class FakeLedger:
    """Takes records the way LedgerWriter.submit does, and keeps them for the test."""

    enabled = True

    def __init__(self) -> None:
        self.records: list[LedgerRecord] = []

    def submit(self, record: LedgerRecord) -> None:
        self.records.append(record)


def finished_context(**changes: object) -> RequestContext:
    ctx = RequestContext(request_id="req-7", method="POST", path="/v1/chat/completions")
    ctx.operation = Operation.CHAT
    ctx.route = "support-summary"
    ctx.target = "openai/gpt-4o-mini"
    ctx.status = 200
    ctx.upstream_s = 0.001
    ctx.usage = Usage(prompt_tokens=11, completion_tokens=4)
    ctx.environment = "prod"
    for key, value in changes.items():
        setattr(ctx, key, value)
    return ctx


def make_recorder(
    access: io.BytesIO | None = None,
) -> tuple[Recorder, Metrics, FakeLedger]:
    metrics, ledger = Metrics(), FakeLedger()
    log = AccessLog(access, ["sk-secret"]) if access is not None else None
    versions = {("support-summary", "openai/gpt-4o-mini"): "2026-01"}
    recorder = Recorder(metrics, ledger, "cfg-v1", log,  # type: ignore[arg-type]
                        versions=versions, masker=Masker(["sk-secret-value-123"]))
    return recorder, metrics, ledger


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_finish_counts_the_request_and_its_tokens() -> None:
    recorder, metrics, _ = make_recorder()

    recorder.finish(finished_context())
    recorder.finish(finished_context())

    labels = {"route": "support-summary", "target": "openai/gpt-4o-mini"}
    assert sample(metrics, "modelport_requests_total", status="200", status_class="2xx",
                  model_version="2026-01", environment="prod", **labels) == 2
    assert sample(metrics, "modelport_tokens_total", direction="prompt", **labels) == 22
    assert sample(metrics, "modelport_tokens_total", direction="completion", **labels) == 8


def test_finish_without_route_or_target_labels_them_dash() -> None:
    recorder, metrics, _ = make_recorder()

    recorder.finish(finished_context(route=None, target=None, status=404, usage=None,
                                     environment=None))

    assert sample(metrics, "modelport_requests_total", route="-", target="-", status="404",
                  status_class="4xx", model_version="-", environment="-") == 1


def test_finish_submits_one_ledger_record_with_the_request_facts() -> None:
    recorder, _, ledger = make_recorder()

    recorder.finish(finished_context(stream=True, first_chunk_s=0.002))

    (record,) = ledger.records
    assert record.request_id == "req-7"
    assert record.operation == "chat"
    assert record.route == "support-summary"
    assert record.target == "openai/gpt-4o-mini"
    assert record.status == 200
    assert record.stream is True
    assert (record.prompt_tokens, record.completion_tokens) == (11, 4)
    assert record.config_version == "cfg-v1"
    assert record.upstream_ms == pytest.approx(1.0)
    assert record.first_chunk_ms == pytest.approx(2.0)
    assert record.latency_ms >= record.overhead_ms >= 0
    assert abs(record.created_at - time.time()) < 60


def test_ledger_record_without_usage_has_no_token_counts() -> None:
    recorder, _, ledger = make_recorder()

    recorder.finish(finished_context(usage=None))

    assert (ledger.records[0].prompt_tokens, ledger.records[0].completion_tokens) == (
        None,
        None,
    )


def test_ledger_record_truncates_long_paths_to_the_column_size() -> None:
    recorder, _, ledger = make_recorder()

    recorder.finish(finished_context(path="/v1/" + "x" * 1000))

    assert len(ledger.records[0].path) == 256


def test_finish_writes_one_access_log_line_with_the_request_facts() -> None:
    access = io.BytesIO()
    recorder, _, _ = make_recorder(access)

    recorder.finish(finished_context(error_code="upstream_timeout", client_disconnected=True,
                                     request_id="sk-secret"))
    recorder._access_log.flush()  # type: ignore[union-attr]

    (entry,) = [orjson.loads(line) for line in access.getvalue().splitlines()]
    assert entry["logger"] == "modelport.access" and entry["level"] == "info"
    assert entry["request_id"] == "***"
    assert entry["route"] == "support-summary"
    assert entry["status"] == 200
    assert entry["prompt_tokens"] == 11
    assert entry["error_code"] == "upstream_timeout"
    assert entry["client_disconnected"] is True
    assert entry["config_version"] == "cfg-v1"


def test_errors_are_counted_by_code_and_stream_gaps_observed() -> None:
    recorder, metrics, _ = make_recorder()

    recorder.finish(finished_context(status=502, error_code="upstream_timeout"))
    recorder.finish(finished_context(stream=True, chunk_gaps=[0.01, 0.03]))

    assert sample(metrics, "modelport_errors_total", route="support-summary",
                  code="upstream_timeout") == 1
    labels = {"route": "support-summary", "target": "openai/gpt-4o-mini"}
    assert sample(metrics, "modelport_inter_chunk_seconds_count", **labels) == 2
    assert sample(metrics, "modelport_inter_chunk_seconds_sum", **labels) == pytest.approx(0.04)


def test_the_ledger_record_names_the_model_version_and_queue_wait() -> None:
    recorder, _, ledger = make_recorder()

    recorder.finish(finished_context(queue_s=0.25))

    (record,) = ledger.records
    assert record.model_version == "2026-01"
    assert record.queue_ms == pytest.approx(250.0)


def test_recent_requests_are_remembered_for_feedback() -> None:
    recorder, _, _ = make_recorder()

    recorder.finish(finished_context(key_id="key_1"))

    assert recorder.answered("req-7") == ("key_1", "support-summary", "2026-01")
    assert recorder.answered("nope") is None


def test_another_config_versions_recorder_remembers_the_same_requests() -> None:
    recorder, _, ledger = make_recorder()
    recorder.finish(finished_context(key_id="key_1"))

    reloaded = recorder.for_version("cfg-v2", {}, Masker())
    reloaded.finish(finished_context(key_id="key_2", request_id="req-8"))

    assert reloaded.answered("req-7") == ("key_1", "support-summary", "2026-01")
    assert recorder.answered("req-8") == ("key_2", "support-summary", None)
    assert [r.config_version for r in ledger.records] == ["cfg-v1", "cfg-v2"]


def test_captured_bodies_are_masked_before_the_log_and_the_ledger() -> None:
    access = io.BytesIO()
    recorder, _, ledger = make_recorder(access)
    body = orjson.dumps({"messages": [{"role": "user", "content":
                         "mail jo@example.com, card 4111 1111 1111 1111, key sk-secret-value-123"}],
                         "password": "hunter2"})

    recorder.finish(finished_context(request_body=body, response_body=b'{"ok": "fine"}'))

    (record,) = ledger.records
    assert record.request_body is not None
    stored = record.request_body.decode()
    for secret in ("jo@example.com", "4111", "sk-secret-value-123", "hunter2"):
        assert secret not in stored
        assert secret not in access.getvalue().decode()
    assert "[MASKED:email]" in stored and "[MASKED:card]" in stored
    assert orjson.loads(record.response_body or b"") == {"ok": "fine"}
