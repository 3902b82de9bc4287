"""Metrics: one registry per instance, and the documented metric names."""

from __future__ import annotations

from modelport.observability.metrics import Metrics

DOCUMENTED = {
    "modelport_requests_total": "counter",
    "modelport_request_duration_seconds": "histogram",
    "modelport_upstream_duration_seconds": "histogram",
    "modelport_overhead_duration_seconds": "histogram",
    "modelport_time_to_first_chunk_seconds": "histogram",
    "modelport_tokens_total": "counter",
    "modelport_requests_in_flight": "gauge",
    "modelport_ledger_written_total": "counter",
    "modelport_ledger_dropped_total": "counter",
    "modelport_ledger_write_errors_total": "counter",
    "modelport_ledger_pending": "gauge",
}


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()

    first.ledger_written.inc(3)

    assert first.registry is not second.registry
    assert first.registry.get_sample_value("modelport_ledger_written_total") == 3
    assert second.registry.get_sample_value("modelport_ledger_written_total") == 0


def test_render_declares_every_documented_metric_with_its_type() -> None:
    text = Metrics().render().decode()

    for name, kind in DOCUMENTED.items():
        assert f"# TYPE {name} {kind}\n" in text, name


def test_render_shows_labelled_samples_under_their_documented_names() -> None:
    metrics = Metrics()
    metrics.requests.labels("r", "p/m", "v1", "prod", "200", "2xx").inc()
    metrics.tokens.labels("r", "p/m", "prompt").inc(5)
    metrics.ledger_dropped.labels("overflow").inc(2)
    metrics.request_duration.labels("r").observe(0.1)

    text = metrics.render().decode()

    assert ('modelport_requests_total{environment="prod",model_version="v1",route="r",'
            'status="200",status_class="2xx",target="p/m"} 1.0') in text
    assert 'modelport_tokens_total{direction="prompt",route="r",target="p/m"} 5.0' in text
    assert 'modelport_ledger_dropped_total{reason="overflow"} 2.0' in text
    assert 'modelport_request_duration_seconds_count{route="r"} 1.0' in text


def test_content_type_is_prometheus_text() -> None:
    assert Metrics.content_type.startswith("text/plain")
