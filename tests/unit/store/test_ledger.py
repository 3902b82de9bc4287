"""LedgerWriter: batches written off the request path, kept and retried, drops counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from modelport.config.settings import StoreSettings
from modelport.errors import ConfigError
from modelport.observability.metrics import Metrics
from modelport.store.ledger import LedgerRecord, LedgerWriter
from modelport.store.tables import requests

WAIT_S = 5.0  # upper bound on waiting for an event that normally comes in milliseconds


def record(i: int, **changes: Any) -> LedgerRecord:
    rec = LedgerRecord(
        request_id=f"req-{i}",
        created_at=datetime(2024, 1, 1, tzinfo=UTC).timestamp(),
        method="POST",
        path="/v1/chat/completions",
        operation="chat",
        route="support-summary",
        target="openai/gpt-4o-mini",
        stream=False,
        status=200,
        error_code=None,
        latency_ms=12.5,
        upstream_ms=10.0,
        overhead_ms=2.5,
        first_chunk_ms=None,
        prompt_tokens=10,
        completion_tokens=3,
        config_version="abc123",
        client_disconnected=False,
        request_body=None,
        response_body=None,
    )
    return rec._replace(**changes)


def fast(url: str, **changes: Any) -> StoreSettings:
    values: dict[str, Any] = {"url": url, "flush_interval_s": 0.01, "retry_backoff_s": 0.01}
    values.update(changes)
    return StoreSettings(**values)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def stored_request_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(requests.c.request_id).order_by(requests.c.id)))
    finally:
        engine.dispose()


def row_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(requests)) or 0)
    finally:
        engine.dispose()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class WriteFailures(logging.Handler):
    """Counts the writer's 'will retry' warnings and wakes a test waiting for the n-th one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("ledger write failed"):
            self.count += 1
            for n, event in self._waiters:
                if self.count >= n:
                    event.set()

    async def wait_for(self, n: int) -> None:
        event = asyncio.Event()
        self._waiters.append((n, event))
        if self.count >= n:
            event.set()
        await asyncio.wait_for(event.wait(), WAIT_S)


@pytest.fixture
def write_failures() -> Iterator[WriteFailures]:
    handler = WriteFailures()
    logger = logging.getLogger("modelport.ledger")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# Writing


async def test_stop_writes_every_submitted_record(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    metrics = Metrics()
    writer = LedgerWriter(fast(url), metrics)
    await writer.start()

    for i in range(3):
        writer.submit(record(i))
    await writer.stop()

    assert stored_request_ids(url) == ["req-0", "req-1", "req-2"]
    assert sample(metrics, "modelport_ledger_written_total") == 3
    assert writer.pending == 0
    assert sample(metrics, "modelport_ledger_dropped_total", reason="shutdown") == 0


async def test_records_larger_than_one_batch_are_all_written(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    writer = LedgerWriter(fast(url, batch_size=2), Metrics())
    await writer.start()

    for i in range(5):
        writer.submit(record(i))
    await writer.stop()

    assert row_count(url) == 5


async def test_record_the_store_rejects_is_dropped_and_the_rest_of_its_batch_kept(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    metrics = Metrics()
    writer = LedgerWriter(fast(url), metrics)
    await writer.start()

    writer.submit(record(0))
    writer.submit(record(1, method=None))  # NOT NULL column
    writer.submit(record(2))
    await writer.stop()

    assert stored_request_ids(url) == ["req-0", "req-2"]
    assert sample(metrics, "modelport_ledger_written_total") == 2
    assert sample(metrics, "modelport_ledger_dropped_total", reason="rejected") == 1


# A store that is down


async def test_failed_writes_keep_the_records_and_retry(
    tmp_path: Path, write_failures: WriteFailures
) -> None:
    # A SQLite "database" that is a directory: every connection fails.
    metrics = Metrics()
    writer = LedgerWriter(fast(f"sqlite:///{tmp_path}"), metrics)
    await writer.start()
    for i in range(3):
        writer.submit(record(i))

    await write_failures.wait_for(2)

    assert writer.pending == 3
    assert sample(metrics, "modelport_ledger_write_errors_total") >= 2
    await writer.stop()


async def test_records_still_failing_at_stop_are_dropped_as_shutdown(
    tmp_path: Path, write_failures: WriteFailures
) -> None:
    metrics = Metrics()
    writer = LedgerWriter(fast(f"sqlite:///{tmp_path}"), metrics)
    await writer.start()
    for i in range(3):
        writer.submit(record(i))
    await write_failures.wait_for(1)

    await writer.stop()

    assert writer.pending == 0
    assert sample(metrics, "modelport_ledger_dropped_total", reason="shutdown") == 3
    assert sample(metrics, "modelport_ledger_written_total") == 0


async def test_records_are_written_once_the_store_comes_back(
    tmp_path: Path, write_failures: WriteFailures
) -> None:
    # create_engine, unlike make_engine, does not create the folder: writes fail until it exists.
    db = tmp_path / "later" / "ledger.db"
    metrics = Metrics()
    writer = LedgerWriter(fast(f"sqlite:///{db}"), metrics, engine_factory=create_engine)
    await writer.start()
    for i in range(3):
        writer.submit(record(i))
    await write_failures.wait_for(1)

    db.parent.mkdir()
    await writer.stop()

    assert row_count(f"sqlite:///{db}") == 3
    assert sample(metrics, "modelport_ledger_dropped_total", reason="shutdown") == 0


async def test_stop_during_a_retry_backoff_still_makes_a_final_flush(
    tmp_path: Path, write_failures: WriteFailures
) -> None:
    db = tmp_path / "later" / "ledger.db"
    metrics = Metrics()
    settings = fast(f"sqlite:///{db}", retry_backoff_s=30.0)
    writer = LedgerWriter(settings, metrics, engine_factory=create_engine)
    await writer.start()
    writer.submit(record(0))
    await write_failures.wait_for(1)

    db.parent.mkdir()
    await writer.stop(timeout_s=0.2)

    assert sample(metrics, "modelport_ledger_dropped_total", reason="shutdown") == 0
    assert row_count(f"sqlite:///{db}") == 1


async def test_pending_gauge_counts_records_waiting_while_the_store_is_down(
    tmp_path: Path, write_failures: WriteFailures
) -> None:
    metrics = Metrics()
    writer = LedgerWriter(fast(f"sqlite:///{tmp_path}"), metrics)
    await writer.start()
    for i in range(3):
        writer.submit(record(i))
    await write_failures.wait_for(1)
    try:
        assert sample(metrics, "modelport_ledger_pending") == 3
    finally:
        await writer.stop()


# Drops without a store


async def test_submissions_beyond_max_pending_are_dropped_as_overflow(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    metrics = Metrics()
    writer = LedgerWriter(fast(url, max_pending=2), metrics)

    for i in range(5):
        writer.submit(record(i))

    assert writer.pending == 2
    assert sample(metrics, "modelport_ledger_dropped_total", reason="overflow") == 3
    await writer.start()
    await writer.stop()
    assert stored_request_ids(url) == ["req-0", "req-1"]


async def test_stop_without_start_drops_pending_records_as_shutdown(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = LedgerWriter(fast(sqlite_url(tmp_path)), metrics)
    writer.submit(record(0))

    await writer.stop()

    assert writer.pending == 0
    assert sample(metrics, "modelport_ledger_dropped_total", reason="shutdown") == 1


@pytest.mark.parametrize("url", ["not a database url", "nosuchdialect://host/db"])
def test_unusable_store_url_is_a_config_error_on_store_url(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        LedgerWriter(StoreSettings(url=url), Metrics())

    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("store.url: cannot use this database URL")
