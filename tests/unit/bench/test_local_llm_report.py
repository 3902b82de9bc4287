"""The local LLM benchmark's aggregate measure: one definition for one and for N streams."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.unit.bench.modules import bench_module


@pytest.fixture(scope="module")
def report() -> Iterator[ModuleType]:
    with bench_module("local_llm_report") as module:
        yield module


def stream(start: float, first: float, last: float, tokens: int) -> dict[str, Any]:
    return {"start": start, "first": first, "last": last, "end": last + 0.01,
            "tokens": tokens, "usage_tokens": tokens, "text": "x", "error": None,
            "kind": "long"}  # fmt: skip


def test_single_stream_aggregate_counts_the_prefill(report: ModuleType) -> None:
    # 100 tokens: first after 0.5 s of prefill, last at 2.5 s. Decode rate 99 / 2 s; the
    # aggregate (the goal's measure) is 100 / 2.5 s. Two streams: the median of the two.
    run = report.to_run(1, "modelport", 1, [stream(10.0, 10.5, 12.5, 100),
                                            stream(20.0, 20.5, 24.5, 100)])  # fmt: skip
    assert run.decode_tok_s == pytest.approx((99 / 2 + 99 / 4) / 2)
    assert run.aggregate_tok_s == pytest.approx((100 / 2.5 + 100 / 4.5) / 2)


def test_concurrent_aggregate_is_all_tokens_over_the_whole_span(report: ModuleType) -> None:
    together = [stream(5.0, 6.0, 9.0, 100), stream(5.0, 6.5, 10.0, 100)]
    run = report.to_run(1, "modelport-4", 2, together)
    assert run.aggregate_tok_s == pytest.approx(200 / 5.0)


def test_goal_compares_like_with_like(report: ModuleType) -> None:
    runs = []
    for rnd in (1, 2):
        runs.append(report.to_run(rnd, "modelport", 1, [stream(0.0, 0.2, 1.2, 51)]))
        four = [stream(0.0, 0.8, 2.8, 51) for _ in range(4)]  # 204 tokens in 2.8 s
        runs.append(report.to_run(rnd, "modelport-4", 4, four))
    summary = report.summarise(runs, ["modelport", "modelport-4"])
    ratio = summary["compare"]["aggregate modelport-4 / modelport"]
    assert ratio.median == pytest.approx((204 / 2.8) / (51 / 1.2))
    stricter = summary["compare"]["aggregate modelport-4 / modelport single decode (stricter)"]
    assert stricter.median == pytest.approx((204 / 2.8) / 50.0)
    args = argparse.Namespace(concurrent=4, threads=1, wide_threads=2)
    goals = report.llm_goals(summary, args, wide=False)
    (aggregate,) = [g for g in goals if "aggregate" in g.name]
    assert aggregate.passed is (ratio.median >= report.GOAL_AGGREGATE)
    assert aggregate.passed is True  # 1.71x
