"""Files and batches as stored rows: what the Files and Batches APIs show, and the lines a
batch runner leases, runs and finishes.

Every step that must happen once is one guarded statement or one transaction:

- A file is kept with all its chunks in one transaction, and a batch with all its lines:
  nothing is ever half-created.
- A server takes lines by leasing them (``lease``): each leased line is marked running with
  the server's name and a deadline, in one statement that skips rows another server holds
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers). A line whose lease
  ran out (its server died) is leased again.
- A line is finished (``finish``) only by the server that holds its lease: its output line
  and its ledger row are written in one transaction, so an answer is kept and billed once,
  and an answer from a server whose lease was taken over is dropped whole.
- A batch ends (``settle``) once none of its lines is left to run, with a guarded update, so
  two servers cannot both end it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    LargeBinary,
    Select,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from modelport.errors import Conflict
from modelport.store.keys import KeyStore
from modelport.store.ledger import LedgerRecord, ledger_row
from modelport.store.tables import batch_lines, batches, file_chunks, files, requests

# batches that are not over yet; "finalizing": past its window, its last lines finishing
ACTIVE = ("in_progress", "cancelling", "paused", "finalizing")
_PAGE = 500  # rows read at a time when a file's content is streamed


class DuplicateJob(Conflict):
    code = "duplicate_job"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    key_id: str | None
    purpose: str  # batch, batch_output
    filename: str
    bytes: int
    lines: int
    created_at: datetime
    batch_id: str | None = None  # an output or error file: its batch
    errors_only: bool = False  # the batch's error file


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    completed: int
    failed: int

    @property
    def finished(self) -> int:
        return self.completed + self.failed


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    key_id: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: datetime
    expires_at: datetime
    total: int
    metadata: str | None = None  # JSON
    paused_reason: str | None = None
    in_progress_at: datetime | None = None
    finalizing_at: datetime | None = None
    completed_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: Counts | None = None  # filled in when read
    kind: str = "batch"  # job: one request sent with Prefer: respond-async
    idempotency_key: str | None = None  # a job's, scoped to its caller


@dataclass(frozen=True, slots=True)
class NewLine:
    line_no: int
    custom_id: str
    body: str  # the request's JSON body
    refused: str | None = None  # an error output line: the line is failed from the start


@dataclass(frozen=True, slots=True)
class FinishedLine:
    line_id: int
    ok: bool
    output: str  # its output (or error) file's line
    record: LedgerRecord | None  # its ledger row


@dataclass(frozen=True, slots=True)
class LeasedLine:
    id: int
    batch_id: str
    line_no: int
    custom_id: str
    body: str
    tries: int


def _file(r: object) -> FileRow:
    m = r._mapping  # type: ignore[attr-defined]
    return FileRow(m["id"], m["key_id"], m["purpose"], m["filename"], m["bytes"], m["lines"],
                   m["created_at"], m["batch_id"], bool(m["errors_only"]))


def _batch(r: object, counts: Counts | None) -> BatchRow:
    m = r._mapping  # type: ignore[attr-defined]
    return BatchRow(
        id=m["id"], key_id=m["key_id"], endpoint=m["endpoint"],
        input_file_id=m["input_file_id"], completion_window=m["completion_window"],
        status=m["status"], created_at=m["created_at"], expires_at=m["expires_at"],
        total=m["total"], metadata=m["metadata"], paused_reason=m["paused_reason"],
        in_progress_at=m["in_progress_at"], finalizing_at=m["finalizing_at"],
        completed_at=m["completed_at"], cancelling_at=m["cancelling_at"],
        cancelled_at=m["cancelled_at"], expired_at=m["expired_at"],
        output_file_id=m["output_file_id"], error_file_id=m["error_file_id"], counts=counts,
        kind=m["kind"], idempotency_key=m["idempotency_key"])


_DONE = func.sum(case((batch_lines.c.status == "done", 1), else_=0))
_FAILED = func.sum(case((batch_lines.c.status == "failed", 1), else_=0))


class BatchStore(KeyStore):
    """The files, batches and batch lines tables; they share the keys' engine."""

    # -- files ---------------------------------------------------------------------------

    def add_file(self, row: FileRow, chunks: Iterable[bytes]) -> None:
        """The file and every chunk of it, in one transaction."""
        with self._transaction() as conn:
            conn.execute(insert(files).values(
                id=row.id, key_id=row.key_id, purpose=row.purpose, filename=row.filename,
                bytes=row.bytes, lines=row.lines, created_at=row.created_at,
                batch_id=row.batch_id, errors_only=row.errors_only))
            for seq, data in enumerate(chunks):
                conn.execute(insert(file_chunks).values(file_id=row.id, seq=seq, data=data))

    def file(self, file_id: str) -> FileRow | None:
        with self._connection() as conn:
            found = conn.execute(select(files).where(files.c.id == file_id)).first()
        return None if found is None else _file(found)

    def files(self, key_id: str | None, *, purpose: str | None = None, limit: int = 100,
              after: str | None = None) -> list[FileRow]:
        """A key's files, newest first; ``after``: the last id of the previous page."""
        query = select(files).where(files.c.key_id.is_(None) if key_id is None
                                    else files.c.key_id == key_id)
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        query = _after(query, files, after).order_by(files.c.created_at.desc(),
                                                     files.c.id.desc())
        with self._connection() as conn:
            return [_file(r) for r in conn.execute(query.limit(limit))]

    def delete_file(self, file_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(delete(file_chunks).where(file_chunks.c.file_id == file_id))
            conn.execute(delete(files).where(files.c.id == file_id))

    def chunks(self, file_id: str) -> Iterator[bytes]:
        """An uploaded file's bytes, as uploaded, a chunk at a time."""
        seq = 0
        while True:
            with self._connection() as conn:
                found = conn.execute(
                    select(file_chunks.c.seq, file_chunks.c.data)
                    .where(file_chunks.c.file_id == file_id, file_chunks.c.seq >= seq)
                    .order_by(file_chunks.c.seq).limit(8)).all()
            if not found:
                return
            for row in found:
                yield bytes(row.data)
            seq = found[-1].seq + 1

    def outputs(self, batch_id: str, *, errors: bool) -> Iterator[str]:
        """An output (or error) file's lines, in input order, a page at a time."""
        status = "failed" if errors else "done"
        line_no = 0
        while True:
            with self._connection() as conn:
                found = conn.execute(
                    select(batch_lines.c.line_no, batch_lines.c.output)
                    .where(batch_lines.c.batch_id == batch_id,
                           batch_lines.c.status == status, batch_lines.c.line_no > line_no)
                    .order_by(batch_lines.c.line_no).limit(_PAGE)).all()
            if not found:
                return
            for row in found:
                yield row.output
            line_no = found[-1].line_no

    # -- batches -------------------------------------------------------------------------

    def create_batch(self, row: BatchRow, lines: Iterable[NewLine]) -> None:
        """The batch and all its lines, in one transaction; a refused line is failed from
        the start with its error line as its output. ``DuplicateJob`` when a job with the
        same idempotency key exists already."""
        try:
            self._create(row, lines)
        except IntegrityError:
            if row.idempotency_key is None:
                raise
            raise DuplicateJob("A job with this Idempotency-Key exists.") from None

    def _create(self, row: BatchRow, lines: Iterable[NewLine]) -> None:
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(insert(batches).values(
                id=row.id, kind=row.kind, key_id=row.key_id,
                idempotency_key=row.idempotency_key, endpoint=row.endpoint,
                input_file_id=row.input_file_id, completion_window=row.completion_window,
                status=row.status, metadata=row.metadata, total=row.total,
                created_at=row.created_at, expires_at=row.expires_at,
                in_progress_at=row.in_progress_at))
            page: list[dict[str, object]] = []
            for line in lines:
                page.append({
                    "batch_id": row.id, "line_no": line.line_no, "custom_id": line.custom_id,
                    "body": line.body, "status": "pending" if line.refused is None else "failed",
                    "tries": 0, "not_before": 0.0, "output": line.refused,
                    "finished_at": None if line.refused is None else now})
                if len(page) == _PAGE:
                    conn.execute(insert(batch_lines), page)
                    page = []
            if page:
                conn.execute(insert(batch_lines), page)

    def batch(self, batch_id: str) -> BatchRow | None:
        with self._connection() as conn:
            found = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
            if found is None:
                return None
            return _batch(found, self._counts(conn, [batch_id]).get(batch_id))

    def batches(self, key_id: str | None, *, limit: int = 20, after: str | None = None,
                everyone: bool = False) -> list[BatchRow]:
        """A key's batches (``everyone``: all of them), newest first."""
        query = select(batches).where(batches.c.kind == "batch")
        if not everyone:
            query = query.where(batches.c.key_id.is_(None) if key_id is None
                                else batches.c.key_id == key_id)
        query = _after(query, batches, after).order_by(batches.c.created_at.desc(),
                                                       batches.c.id.desc())
        with self._connection() as conn:
            found = conn.execute(query.limit(limit)).all()
            counts = self._counts(conn, [r.id for r in found])
        return [_batch(r, counts.get(r.id)) for r in found]

    @staticmethod
    def _counts(conn: Connection, ids: list[str]) -> dict[str, Counts]:
        if not ids:
            return {}
        query = (select(batch_lines.c.batch_id, func.count(), _DONE, _FAILED)
                 .where(batch_lines.c.batch_id.in_(ids)).group_by(batch_lines.c.batch_id))
        return {r[0]: Counts(int(r[1]), int(r[2] or 0), int(r[3] or 0))
                for r in conn.execute(query)}

    def only_line(self, batch_id: str) -> tuple[str, str | None]:
        """A job's one line: its status and, once finished, its output line."""
        with self._connection() as conn:
            found = conn.execute(select(batch_lines.c.status, batch_lines.c.output)
                                 .where(batch_lines.c.batch_id == batch_id)
                                 .order_by(batch_lines.c.line_no).limit(1)).one()
        return found.status, found.output

    def by_idempotency_key(self, scoped_key: str) -> BatchRow | None:
        with self._connection() as conn:
            found = conn.execute(select(batches).where(
                batches.c.idempotency_key == scoped_key)).first()
            if found is None:
                return None
            return _batch(found, self._counts(conn, [found.id]).get(found.id))

    def purge(self, before: datetime) -> int:
        """Delete what is older than ``before``: ended batches (with their lines and output
        and error files) and input files no batch in progress reads. How many batches."""
        ended = or_(*(and_(batches.c.status == status, batches.c[f"{status}_at"] < before)
                      for status in ("completed", "cancelled", "expired")))
        with self._transaction() as conn:
            gone = [r.id for r in conn.execute(select(batches.c.id).where(ended))]
            for page in range(0, len(gone), _PAGE):
                ids = gone[page:page + _PAGE]
                conn.execute(delete(batch_lines).where(batch_lines.c.batch_id.in_(ids)))
                conn.execute(delete(batches).where(batches.c.id.in_(ids)))
            active = select(batches.c.input_file_id).where(batches.c.status.in_(ACTIVE))
            old_input = and_(files.c.created_at < before, files.c.batch_id.is_(None),
                             files.c.id.not_in(active))
            stale = select(files.c.id).where(
                or_(files.c.batch_id.in_(gone), old_input) if gone else old_input)
            stale_ids = [r.id for r in conn.execute(stale)]
            for page in range(0, len(stale_ids), _PAGE):
                ids = stale_ids[page:page + _PAGE]
                conn.execute(delete(file_chunks).where(file_chunks.c.file_id.in_(ids)))
                conn.execute(delete(files).where(files.c.id.in_(ids)))
        return len(gone)

    def has_work(self) -> bool:
        """Whether any batch is in progress (lines to lease, perhaps)."""
        with self._connection() as conn:
            return conn.execute(select(batches.c.id).where(
                batches.c.status == "in_progress").limit(1)).first() is not None

    def cancel(self, batch_id: str) -> bool:
        """Stop leasing the batch's lines; False when it is already over."""
        with self._transaction() as conn:
            done = conn.execute(
                update(batches).where(batches.c.id == batch_id,
                                      batches.c.status.in_(("in_progress", "paused")))
                .values(status="cancelling", cancelling_at=self._clock()))
        return bool(done.rowcount)

    def pause(self, batch_id: str, reason: str) -> None:
        with self._transaction() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id,
                                               batches.c.status == "in_progress")
                         .values(status="paused", paused_reason=reason[:1000]))

    def resume_paused(self) -> int:
        """Every paused batch back in progress (its next line tries the budget again)."""
        with self._transaction() as conn:
            done = conn.execute(update(batches).where(batches.c.status == "paused")
                                .values(status="in_progress", paused_reason=None))
        return int(done.rowcount)

    # -- lines ---------------------------------------------------------------------------

    def lease(self, owner: str, now: float, lease_s: float, limit: int) -> list[LeasedLine]:
        """Up to ``limit`` lines of batches in progress, oldest first, leased to ``owner``
        until ``now + lease_s``: pending ones, and running ones whose lease ran out."""
        takeable = (
            select(batch_lines.c.id)
            .join(batches, batches.c.id == batch_lines.c.batch_id)
            .where(batches.c.status == "in_progress",
                   or_(batch_lines.c.status == "pending",
                       and_(batch_lines.c.status == "running",
                            batch_lines.c.lease_until < now)),
                   batch_lines.c.not_before <= now)
            .order_by(batch_lines.c.id).limit(limit)
            .with_for_update(skip_locked=True, of=batch_lines)
        )
        statement = (
            update(batch_lines).where(batch_lines.c.id.in_(takeable.scalar_subquery()))
            .values(status="running", lease_owner=owner, lease_until=now + lease_s,
                    tries=batch_lines.c.tries + 1)
            .returning(batch_lines.c.id, batch_lines.c.batch_id, batch_lines.c.line_no,
                       batch_lines.c.custom_id, batch_lines.c.body, batch_lines.c.tries)
        )
        with self._transaction() as conn:
            found = conn.execute(statement).all()
        return sorted((LeasedLine(*r) for r in found), key=lambda line: line.id)

    def renew(self, owner: str, line_ids: list[int], until: float) -> None:
        """Keep the leases of the lines still running here."""
        if not line_ids:
            return
        with self._transaction() as conn:
            conn.execute(update(batch_lines).where(
                batch_lines.c.id.in_(line_ids), batch_lines.c.lease_owner == owner,
                batch_lines.c.status == "running").values(lease_until=until))

    def finish(self, owner: str, lines: Sequence[FinishedLine]) -> list[bool]:
        """Keep each line's output and its ledger row, together, where ``owner`` still
        holds the line's lease (one transaction for them all); for each line, whether it
        was kept (False: its lease had passed to another server, and nothing of it is)."""
        now = self._clock()
        kept: dict[int, bool] = {}
        with self._transaction() as conn:
            # rows locked in one order, so that two writers cannot deadlock
            for line in sorted(lines, key=lambda line: line.line_id):
                done = conn.execute(
                    update(batch_lines).where(batch_lines.c.id == line.line_id,
                                              batch_lines.c.lease_owner == owner,
                                              batch_lines.c.status == "running")
                    .values(status="done" if line.ok else "failed", output=line.output,
                            finished_at=now, lease_owner=None, lease_until=None))
                kept[line.line_id] = done.rowcount == 1
            rows = [ledger_row(line.record) for line in lines
                    if kept[line.line_id] and line.record is not None]
            if rows:
                conn.execute(insert(requests), rows)
        return [kept[line.line_id] for line in lines]

    def release_all(self, line_ids: list[int], owner: str) -> None:
        """Lines a stopping server held, back to pending for the next one at once."""
        with self._transaction() as conn:
            conn.execute(
                update(batch_lines).where(batch_lines.c.id.in_(line_ids),
                                          batch_lines.c.lease_owner == owner,
                                          batch_lines.c.status == "running")
                .values(status="pending", lease_owner=None, lease_until=None,
                        tries=batch_lines.c.tries - 1))

    def release(self, line_id: int, owner: str, not_before: float) -> None:
        """A line that could not run yet (a limit, a budget, an overload): back to pending,
        not before ``not_before``, the try not counted."""
        with self._transaction() as conn:
            conn.execute(
                update(batch_lines).where(batch_lines.c.id == line_id,
                                          batch_lines.c.lease_owner == owner,
                                          batch_lines.c.status == "running")
                .values(status="pending", lease_owner=None, lease_until=None,
                        not_before=not_before, tries=batch_lines.c.tries - 1))

    # -- ending batches ------------------------------------------------------------------

    def settle(self, now: datetime, expired_line: Callable[[str], str]) -> list[str]:
        """End every batch with nothing left to run: completed; cancelled once its running
        lines are done; expired once past its window (leasing stops at once, and once its
        running lines are done, the lines never run get ``expired_line(custom_id)`` in the
        error file). The ids of the batches ended here."""
        with self._connection() as conn:
            active = conn.execute(select(batches.c.id, batches.c.status, batches.c.expires_at)
                                  .where(batches.c.status.in_(ACTIVE))).all()
            if not active:
                return []
            ids = [r.id for r in active]
            left = self._lines_in(conn, ids, ("pending", "running"))
            running = self._lines_in(conn, ids, ("running",), alive_at=now.timestamp())
        ended = []
        for row in active:
            if row.status != "cancelling" and now >= row.expires_at:
                if row.status != "finalizing":
                    self._move(row.id, row.status, "finalizing", finalizing_at=now)
                over = not running.get(row.id) and self._expire(row.id, now, expired_line)
            elif row.status == "cancelling":
                over = not running.get(row.id) and self._end(row.id, "cancelling",
                                                             "cancelled", now)
            else:
                over = row.status == "in_progress" and not left.get(row.id) and \
                    self._end(row.id, "in_progress", "completed", now)
            if over:
                ended.append(row.id)
        return ended

    @staticmethod
    def _lines_in(conn: Connection, ids: list[str], statuses: tuple[str, ...],
                  alive_at: float | None = None) -> dict[str, int]:
        query = (select(batch_lines.c.batch_id, func.count())
                 .where(batch_lines.c.batch_id.in_(ids), batch_lines.c.status.in_(statuses))
                 .group_by(batch_lines.c.batch_id))
        if alive_at is not None:  # a lease that ran out belongs to a server that is gone
            query = query.where(batch_lines.c.lease_until >= alive_at)
        return {r[0]: int(r[1]) for r in conn.execute(query)}

    def _move(self, batch_id: str, before: str, after: str, **values: Any) -> bool:
        with self._transaction() as conn:
            done = conn.execute(update(batches).where(batches.c.id == batch_id,
                                                      batches.c.status == before)
                                .values(status=after, **values))
        return bool(done.rowcount)

    def _expire(self, batch_id: str, now: datetime, expired_line: Callable[[str], str]
                ) -> bool:
        """Fail the lines never run (pending, or leased by a server that is gone), once no
        live lease remains; each update guarded, so a line answered meanwhile stays so."""
        stamp = now.timestamp()
        never_run = or_(batch_lines.c.status == "pending",
                        and_(batch_lines.c.status == "running",
                             batch_lines.c.lease_until < stamp))
        with self._transaction() as conn:
            alive = conn.execute(select(func.count()).where(
                batch_lines.c.batch_id == batch_id, batch_lines.c.status == "running",
                batch_lines.c.lease_until >= stamp)).scalar_one()
            if alive:  # leased before the batch stopped leasing: let them finish
                return False
            never = conn.execute(select(batch_lines.c.id, batch_lines.c.custom_id).where(
                batch_lines.c.batch_id == batch_id, never_run)).all()
            for line in never:
                conn.execute(update(batch_lines).where(batch_lines.c.id == line.id, never_run)
                             .values(status="failed", output=expired_line(line.custom_id),
                                     finished_at=now, lease_owner=None, lease_until=None))
        return self._end(batch_id, "finalizing", "expired", now)

    def _end(self, batch_id: str, status: str, final: str, now: datetime) -> bool:
        """The batch's last step, once (guarded by its status): its output and error
        files, and its final status."""
        with self._transaction() as conn:
            taken = conn.execute(update(batches).where(batches.c.id == batch_id,
                                                       batches.c.status == status)
                                 .values(status=final, finalizing_at=now,
                                         **{f"{final}_at": now}))
            if taken.rowcount != 1:
                return False
            key_id, batch_kind = conn.execute(select(batches.c.key_id, batches.c.kind)
                                              .where(batches.c.id == batch_id)).one()
            made: dict[str, str | None] = {}
            for name, kind in (("output_file_id", "output"), ("error_file_id", "error")):
                lines, size = conn.execute(
                    select(func.count(), func.sum(_octets(conn) + 1))
                    .where(batch_lines.c.batch_id == batch_id,
                           batch_lines.c.status == ("failed" if kind == "error" else "done"))
                ).one()
                made[name] = None
                if lines and batch_kind == "batch":  # a job's answer is read as the job
                    made[name] = new_id("file-")
                    conn.execute(insert(files).values(
                        id=made[name], key_id=key_id, purpose="batch_output",
                        filename=f"{batch_id}_{kind}.jsonl", bytes=int(size or 0),
                        lines=int(lines), created_at=now, batch_id=batch_id,
                        errors_only=kind == "error"))
            conn.execute(update(batches).where(batches.c.id == batch_id).values(**made))
        return True


def _octets(conn: Connection) -> Any:
    """The length of a line's output in bytes (UTF-8), as each database counts it."""
    if conn.dialect.name == "postgresql":
        return func.octet_length(batch_lines.c.output)
    return func.length(cast(batch_lines.c.output, LargeBinary))


def _after(query: Select[Any], table: Table, after: str | None) -> Select[Any]:
    """The page after the row ``after`` in newest-first order."""
    if after is None:
        return query
    c = table.c
    anchor = select(c.created_at).where(c.id == after).scalar_subquery()
    return query.where(or_(c.created_at < anchor, and_(c.created_at == anchor, c.id < after)))
