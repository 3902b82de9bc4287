"""The lock-free metric objects export exactly what prometheus_client's would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelport.observability.loop_metrics import Counter, Gauge, Histogram


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    registry = CollectorRegistry()
    h = Histogram("t_seconds", "doc", ["route"], buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.1, 0.5, 3.0):
        h.labels("r").observe(value)
    get = registry.get_sample_value
    assert get("t_seconds_bucket", {"route": "r", "le": "0.1"}) == 2  # 0.1 is "<= 0.1"
    assert get("t_seconds_bucket", {"route": "r", "le": "1.0"}) == 3
    assert get("t_seconds_bucket", {"route": "r", "le": "+Inf"}) == 4
    assert get("t_seconds_count", {"route": "r"}) == 4
    assert get("t_seconds_sum", {"route": "r"}) == pytest.approx(3.65)
    assert b"# TYPE t_seconds histogram" in generate_latest(registry)


def test_counters_and_gauges_keep_their_values_per_label_set() -> None:
    registry = CollectorRegistry()
    c = Counter("hits", "doc", ["kind"], registry=registry)
    g = Gauge("level", "doc", registry=registry)
    c.labels("a").inc()
    c.labels("a").inc(2)
    c.labels("b").inc()
    g.inc()
    g.inc()
    g.dec()
    assert registry.get_sample_value("hits_total", {"kind": "a"}) == 3
    assert registry.get_sample_value("hits_total", {"kind": "b"}) == 1
    assert registry.get_sample_value("level") == 1
    g.set(7)
    assert registry.get_sample_value("level") == 7
    text = generate_latest(registry).decode()
    assert "counter" in text.split("hits_total{")[0] and "# TYPE level gauge" in text


def test_wrong_label_count_is_an_error() -> None:
    c = Counter("x", "doc", ["a", "b"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        c.labels("only-one")
