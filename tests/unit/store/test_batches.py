"""BatchStore: leases that another server cannot take while they hold and can once they
lapse, answers kept only by the lease's holder, batches ended once (completed, cancelled,
expired with the lines never run in the error file), files kept whole; on SQLite and (where
MODELPORT_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelport.batch.output import expired
from modelport.errors import InvalidFile
from modelport.store.batches import (
    BatchRow,
    BatchStore,
    DuplicateJob,
    FileRow,
    FinishedLine,
    NewLine,
)
from modelport.store.engine import make_engine, migrate
from tests.unit.store.test_keys import isolated_database

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    for url in isolated_database(request.param, tmp_path, request):
        engine = make_engine(url)
        migrate(engine)
        yield BatchStore(engine)
        engine.dispose()


def batch(store: BatchStore, lines: int, *, expires: datetime = NOW + timedelta(hours=24),
          refused: int = 0) -> BatchRow:
    row = BatchRow(id=f"batch_{lines}_{refused}_{expires.hour}", key_id="k1",
                   endpoint="/v1/chat/completions", input_file_id="file-x",
                   completion_window="24h", status="in_progress", created_at=NOW,
                   expires_at=expires, total=lines + refused, in_progress_at=NOW)
    store.create_batch(row, [NewLine(i + 1, f"c{i + 1}", "{}") for i in range(lines)]
                       + [NewLine(lines + i + 1, f"r{i}", "{}", refused='{"error": 1}')
                          for i in range(refused)])
    return row


def test_a_held_lease_is_not_taken_and_a_lapsed_one_is(store: BatchStore) -> None:
    row = batch(store, 3)
    first = store.lease("a", 1000.0, 30, 2)
    assert [line.line_no for line in first] == [1, 2] and first[0].tries == 1
    second = store.lease("b", 1001.0, 30, 5)
    assert [line.line_no for line in second] == [3]  # a's lines are held
    assert store.lease("b", 1029.0, 30, 5) == []
    again = store.lease("b", 1031.0, 30, 5)  # a's leases lapsed (a died)
    assert [line.line_no for line in again] == [1, 2] and again[0].tries == 2
    # a comes back with an answer: dropped whole; b's answers are kept, once
    assert store.finish("a", [FinishedLine(first[0].id, True, "late", None)]) == [False]
    kept = store.finish("b", [FinishedLine(line.id, True, f"out{line.line_no}", None)
                              for line in [*second, *again]])
    assert kept == [True, True, True]
    assert store.finish("b", [FinishedLine(second[0].id, True, "twice", None)]) == [False]
    assert list(store.outputs(row.id, errors=False)) == ["out1", "out2", "out3"]
    counts = store.batch(row.id).counts  # type: ignore[union-attr]
    assert (counts.total, counts.completed, counts.failed) == (3, 3, 0)


def test_a_batch_ends_once_with_its_files(store: BatchStore) -> None:
    row = batch(store, 2, refused=1)
    lines = store.lease("a", 1000.0, 30, 5)
    assert store.settle(NOW, expired) == []  # lines still running
    store.finish("a", [FinishedLine(lines[0].id, True, "ok", None),
                       FinishedLine(lines[1].id, False, "bad", None)])
    assert store.settle(NOW, expired) == [row.id]
    assert store.settle(NOW, expired) == []  # once
    ended = store.batch(row.id)
    assert ended is not None and ended.status == "completed" and ended.completed_at == NOW
    out, err = store.file(ended.output_file_id or ""), store.file(ended.error_file_id or "")
    assert out is not None and (out.lines, out.bytes, out.purpose) == (1, 3, "batch_output")
    assert err is not None and err.lines == 2 and err.errors_only
    assert list(store.outputs(row.id, errors=True)) == ["bad", '{"error": 1}']


def test_cancel_waits_for_running_lines_and_runs_no_more(store: BatchStore) -> None:
    row = batch(store, 4)
    running = store.lease("a", NOW.timestamp(), 30, 1)
    assert store.cancel(row.id) and not store.cancel(row.id)
    assert store.lease("b", NOW.timestamp(), 30, 5) == []  # nothing new runs
    assert store.settle(NOW, expired) == []  # one line still running
    store.finish("a", [FinishedLine(running[0].id, True, "done", None)])
    assert store.settle(NOW, expired) == [row.id]
    ended = store.batch(row.id)
    assert ended is not None and ended.status == "cancelled"
    assert (ended.counts.completed, ended.counts.total) == (1, 4)  # type: ignore[union-attr]


def test_past_its_window_a_batch_expires_with_partial_results(store: BatchStore) -> None:
    row = batch(store, 3, expires=NOW + timedelta(hours=1))
    later = NOW + timedelta(hours=1, seconds=1)
    running = store.lease("a", later.timestamp() - 10, 30, 2)  # renewed till now
    store.finish("a", [FinishedLine(running[0].id, True, "first", None)])
    assert store.settle(later, expired) == []  # line 2 is still running: finalizing
    assert store.batch(row.id).status == "finalizing"  # type: ignore[union-attr]
    assert store.lease("b", later.timestamp(), 30, 5) == []  # and no line starts
    store.finish("a", [FinishedLine(running[1].id, True, "second", None)])
    assert store.settle(later, expired) == [row.id]
    ended = store.batch(row.id)
    assert ended is not None and ended.status == "expired" and ended.expired_at == later
    errors = [json.loads(e) for e in store.outputs(row.id, errors=True)]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [("c3", "batch_expired")]
    assert list(store.outputs(row.id, errors=False)) == ["first", "second"]


def test_a_budget_pause_and_resume(store: BatchStore) -> None:
    row = batch(store, 2)
    line = store.lease("a", 1000.0, 30, 1)[0]
    store.release(line.id, "a", 2000.0)
    store.pause(row.id, "The key's budget is spent.")
    paused = store.batch(row.id)
    assert paused is not None and paused.status == "paused"
    assert paused.paused_reason == "The key's budget is spent."
    assert store.lease("a", 3000.0, 30, 5) == []
    assert store.resume_paused() == 1
    again = store.lease("a", 3000.0, 30, 5)
    assert [(x.line_no, x.tries) for x in again] == [(1, 1), (2, 1)]  # the wait was no try


def test_a_file_is_kept_whole_or_not_at_all(store: BatchStore) -> None:
    row = FileRow(id="file-1", key_id=None, purpose="batch", filename="in.jsonl", bytes=6,
                  lines=2, created_at=NOW)

    def chunks() -> Iterator[bytes]:
        yield b"one\n"
        raise InvalidFile("Line 2 is broken.")

    with pytest.raises(InvalidFile):
        store.add_file(row, chunks())
    assert store.file("file-1") is None and list(store.chunks("file-1")) == []
    store.add_file(row, iter([b"one\n", b"two\n"]))
    assert b"".join(store.chunks("file-1")) == b"one\ntwo\n"
    assert [f.id for f in store.files(None)] == ["file-1"]
    store.delete_file("file-1")
    assert store.file("file-1") is None and list(store.chunks("file-1")) == []


def test_a_jobs_idempotency_key_is_unique(store: BatchStore) -> None:
    def job(job_id: str) -> BatchRow:
        return BatchRow(id=job_id, key_id="k1", endpoint="/v1/chat/completions",
                        input_file_id="", completion_window="24h", status="in_progress",
                        created_at=NOW, expires_at=NOW + timedelta(hours=24), total=1,
                        kind="job", idempotency_key="k1:nightly")

    store.create_batch(job("job_a"), [NewLine(1, "job", "{}")])
    with pytest.raises(DuplicateJob):
        store.create_batch(job("job_b"), [NewLine(1, "job", "{}")])
    found = store.by_idempotency_key("k1:nightly")
    assert found is not None and found.id == "job_a" and store.batch("job_b") is None


def test_retention_deletes_ended_batches_and_old_files_only(store: BatchStore) -> None:
    old = NOW - timedelta(days=40)

    def upload(file_id: str, when: datetime) -> None:
        store.add_file(FileRow(id=file_id, key_id="k1", purpose="batch", filename="in.jsonl",
                               bytes=4, lines=1, created_at=when), iter([b"one\n"]))

    upload("file-old", old)  # read by nothing: goes
    upload("file-busy", old)  # read by a batch in progress: stays
    upload("file-new", NOW)  # recent: stays
    ended = batch(store, 1)
    store._move(ended.id, "in_progress", "completed", completed_at=old)
    store.add_file(FileRow(id="file-out", key_id="k1", purpose="batch_output",
                           filename="o.jsonl", bytes=3, lines=1, created_at=old,
                           batch_id=ended.id), iter([b"x\n"]))
    running = BatchRow(id="batch_busy", key_id="k1", endpoint="/v1/chat/completions",
                       input_file_id="file-busy", completion_window="24h",
                       status="in_progress", created_at=old, expires_at=NOW, total=1)
    store.create_batch(running, [NewLine(1, "a", "{}")])
    assert store.purge(NOW - timedelta(days=30)) == 1
    assert store.batch(ended.id) is None and list(store.outputs(ended.id, errors=False)) == []
    assert store.batch("batch_busy") is not None
    assert {f.id for f in store.files("k1")} == {"file-busy", "file-new"}
    assert list(store.chunks("file-old")) == [] and list(store.chunks("file-out")) == []
