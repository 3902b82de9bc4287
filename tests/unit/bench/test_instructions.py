"""The instruction-count benchmark's reading of a callgrind dump and its report."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.unit.bench.modules import bench_module


@pytest.fixture(scope="module")
def instructions() -> Iterator[ModuleType]:
    with bench_module("instructions") as module:
        yield module


def test_the_total_is_read_from_a_dump(instructions: ModuleType) -> None:
    dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 0\ntotals: 468693000\n"
    assert instructions.totals(dump) == 468_693_000  # totals wins over an earlier summary: 0
    assert instructions.totals("events: Ir\nsummary: 1200\n") == 1200


def test_a_dump_without_totals_is_an_error(instructions: ModuleType) -> None:
    with pytest.raises(instructions.BenchError):
        instructions.totals("events: Ir\n")


def test_the_report_gives_the_ratio_to_the_floor(instructions: ModuleType) -> None:
    report = instructions.render({
        "date": "2026-12-07", "config": "bench/configs/bare.yaml", "requests": 600,
        "concurrency": 32, "instructions_per_request": {"floor": 500_000, "modelport": 750_000}})
    assert "| floor | 500,000 |" in report and "| modelport | 750,000 |" in report
    assert "modelport/floor: 1.500" in report
