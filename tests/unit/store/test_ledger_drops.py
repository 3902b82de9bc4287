"""Dropped ledger records are counted at once and logged in aggregate, never once each."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from modelport.config.settings import StoreSettings
from modelport.observability.metrics import Metrics
from modelport.store.ledger import DROP_LOG_INTERVAL_S, LedgerRecord, LedgerWriter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record() -> LedgerRecord:
    return LedgerRecord(
        request_id="r", created_at=time.time(), method="POST", path="/v1/chat/completions",
        operation="chat", route="r", target="p/m", stream=False, status=200, error_code=None,
        latency_ms=1.0, upstream_ms=1.0, overhead_ms=0.1, first_chunk_ms=None,
        prompt_tokens=None, completion_tokens=None, config_version="v", client_disconnected=False,
        request_body=None, response_body=None)


def test_an_overflowing_ledger_logs_one_line_per_interval_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, metrics = Clock(), Metrics()
    writer = LedgerWriter(StoreSettings(url=f"sqlite:///{tmp_path}/l.db", max_pending=1),
                          metrics, clock=clock)
    with caplog.at_level(logging.ERROR, logger="modelport.store"):
        for _ in range(1001):  # the first is kept, the next 1,000 overflow
            writer.submit(_record())
        clock.now += DROP_LOG_INTERVAL_S
        writer.submit(_record())
    lines = [r for r in caplog.records if r.getMessage() == "ledger records dropped"]
    assert [(r.count, r.reason) for r in lines] == [(1, "overflow"), (1000, "overflow")]
    scrape = metrics.render().decode()
    assert 'modelport_ledger_dropped_total{reason="overflow"} 1001.0' in scrape
