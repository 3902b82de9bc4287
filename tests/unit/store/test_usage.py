"""UsageStore: reports and spend read back from ledger rows written by the real LedgerWriter
(so SQLite's stored timestamp format is the production one), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelport.config.settings import StoreSettings
from modelport.observability.metrics import Metrics
from modelport.store.ledger import LedgerRecord, LedgerWriter
from modelport.store.usage import UsageRow, UsageStore
from tests.unit.store.test_keys import isolated_database

T0 = datetime(2030, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from isolated_database(request.param, tmp_path, request)


@pytest.fixture
def usage(store_url: str) -> Iterator[UsageStore]:
    with UsageStore.open(store_url) as opened:
        yield opened


def record(at: datetime, key_id: str | None, route: str | None, *, prompt: int | None = 10,
           completion: int | None = 5, cost: float | None = 0.01) -> LedgerRecord:
    return LedgerRecord(
        request_id=f"req-{at.timestamp()}-{key_id}-{route}", created_at=at.timestamp(),
        method="POST", path="/v1/chat/completions", operation="chat", route=route,
        target="upstream-a/gpt-4o-mini", stream=False, status=200, error_code=None,
        latency_ms=10.0, upstream_ms=9.0, overhead_ms=1.0, first_chunk_ms=None,
        prompt_tokens=prompt, completion_tokens=completion, config_version="v1",
        client_disconnected=False, request_body=None, response_body=None,
        key_id=key_id, environment="prod", cost_usd=cost,
    )


async def seed(url: str, *records: LedgerRecord) -> None:
    metrics = Metrics()
    writer = LedgerWriter(StoreSettings(url=url, flush_interval_s=0.01), metrics)
    await writer.start()
    for rec in records:
        writer.submit(rec)
    await writer.stop()
    assert metrics.registry.get_sample_value("modelport_ledger_written_total") == len(records)


def test_an_empty_ledger_reports_nothing(usage: UsageStore) -> None:
    assert usage.report("key", T0, None) == []
    assert usage.spent_by_key(T0) == {}
    assert usage.last_used_by_key() == {}


async def test_report_by_key_sums_requests_tokens_and_cost_costliest_first(
    store_url: str, usage: UsageStore
) -> None:
    await seed(store_url,
               record(T0, "key_a", "r1", prompt=10, completion=1, cost=0.5),
               record(T0 + timedelta(seconds=1), "key_a", "r2", prompt=20, completion=2,
                      cost=0.25),
               record(T0 + timedelta(seconds=2), "key_b", "r1", prompt=1, completion=1,
                      cost=2.0))

    assert usage.report("key", T0, None) == [
        UsageRow("key_b", 1, 1, 1, 2.0),
        UsageRow("key_a", 2, 30, 3, 0.75),
    ]


async def test_report_by_route_groups_across_keys(store_url: str, usage: UsageStore) -> None:
    await seed(store_url,
               record(T0, "key_a", "r1", cost=0.1),
               record(T0, "key_b", "r1", cost=0.1),
               record(T0, "key_a", "r2", cost=0.05))

    rows = usage.report("route", T0, None)

    assert [(r.group, r.requests) for r in rows] == [("r1", 2), ("r2", 1)]
    assert rows[0].cost_usd == pytest.approx(0.2)


async def test_report_counts_only_requests_from_since_up_to_but_not_including_until(
    store_url: str, usage: UsageStore
) -> None:
    await seed(store_url,
               record(T0 - timedelta(microseconds=1), "key_a", "r"),
               record(T0, "key_a", "r"),
               record(T0 + timedelta(hours=1), "key_a", "r"),
               record(T0 + timedelta(hours=2), "key_a", "r"))

    [row] = usage.report("key", T0, T0 + timedelta(hours=2))
    assert row.requests == 2
    [row] = usage.report("key", T0, None)
    assert row.requests == 3


async def test_requests_without_key_tokens_or_cost_count_with_zeros_under_a_none_group(
    store_url: str, usage: UsageStore
) -> None:
    await seed(store_url,
               record(T0, None, None, prompt=None, completion=None, cost=None),
               record(T0, "key_a", "r", cost=0.3))

    assert usage.report("key", T0, None) == [
        UsageRow("key_a", 1, 10, 5, 0.3),
        UsageRow(None, 1, 0, 0, 0.0),
    ]


async def test_spent_by_key_sums_cost_since_a_time_and_ignores_keyless_requests(
    store_url: str, usage: UsageStore
) -> None:
    await seed(store_url,
               record(T0 - timedelta(days=1), "key_a", "r", cost=100.0),
               record(T0, "key_a", "r", cost=1.5),
               record(T0 + timedelta(minutes=5), "key_a", "r", cost=None),
               record(T0 + timedelta(minutes=9), "key_b", "r", cost=0.25),
               record(T0, None, "r", cost=9.0))

    assert usage.spent_by_key(T0) == {"key_a": 1.5, "key_b": 0.25}


async def test_last_used_by_key_is_each_keys_latest_request_in_utc(
    store_url: str, usage: UsageStore
) -> None:
    await seed(store_url,
               record(T0, "key_a", "r"),
               record(T0 + timedelta(minutes=3, microseconds=250), "key_a", "r"),
               record(T0 + timedelta(minutes=1), "key_b", "r"),
               record(T0 + timedelta(hours=1), None, "r"))

    last = usage.last_used_by_key()

    assert last == {"key_a": T0 + timedelta(minutes=3, microseconds=250),
                    "key_b": T0 + timedelta(minutes=1)}
    assert all(when.tzinfo is not None for when in last.values())


def test_ledger_records_still_build_without_the_key_columns() -> None:
    fields: dict[str, Any] = record(T0, "k", "r")._asdict()
    for name in ("key_id", "environment", "cost_usd"):
        del fields[name]

    rec = LedgerRecord(**fields)

    assert (rec.key_id, rec.environment, rec.cost_usd) == (None, None, None)
