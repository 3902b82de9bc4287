"""The Files and Batches use cases: keep a checked input file, create a batch from one,
read, list and cancel them, for the key that owns them.

A file or batch belongs to the key that created it (in open mode, to nobody, and everyone
sees it): another key's is "not found", so ids cannot be probed. A batch is created with all
its lines in one transaction; a line whose ``body.model`` is not a route the key may call
becomes an error line at once (the rest of the batch runs), while a line for another
endpoint than the batch's refuses the whole batch, naming the line, with nothing created.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson

from modelport.batch import output
from modelport.batch.input import ENDPOINTS, Line, check, chunks, lines_of
from modelport.batch.runner import BatchRunner
from modelport.config.settings import BatchSettings
from modelport.errors import InvalidFile, NotFound, RequestError
from modelport.policy.keys import Principal
from modelport.routing.table import RouteTable
from modelport.store.batches import (
    BatchRow,
    BatchStore,
    DuplicateJob,
    FileRow,
    NewLine,
    new_id,
)

_WINDOW = re.compile(r"^([1-9][0-9]{0,2})h$")
MAX_WINDOW_H = 168
MAX_METADATA = 16  # keys, as OpenAI allows
JOB_WINDOW = "24h"


class BatchService:
    def __init__(self, store: BatchStore, settings: BatchSettings,
                 runner: BatchRunner | None = None) -> None:
        self.store = store
        self.settings = settings
        self.runner = runner

    # -- files ---------------------------------------------------------------------------

    async def upload(self, key_id: str | None, purpose: str, filename: str,
                     source: IO[bytes], size: int) -> FileRow:
        if purpose != "batch":
            raise RequestError("purpose must be 'batch': files here are batch input.",
                               param="purpose")
        checked = await asyncio.to_thread(check, source, self.settings)
        name = "".join(c for c in filename if c.isprintable())[:256]
        row = FileRow(id=new_id("file-"), key_id=key_id, purpose="batch",
                      filename=name or "input.jsonl", bytes=size,
                      lines=checked.lines, created_at=datetime.now(UTC))

        def keep() -> None:
            source.seek(0)
            self.store.add_file(row, chunks(source, self.settings))

        await asyncio.to_thread(keep)
        return row

    async def file(self, key_id: str | None, file_id: str) -> FileRow:
        row = await asyncio.to_thread(self.store.file, file_id)
        if row is None or row.key_id != key_id:
            raise NotFound(f"No file '{file_id}'.", param="file_id")
        return row

    def content(self, row: FileRow) -> Iterator[bytes]:
        """A file's bytes (run in a thread): an upload as kept, an output file's lines."""
        if row.batch_id is None:
            yield from self.store.chunks(row.id)
            return
        page = bytearray()
        for line in self.store.outputs(row.batch_id, errors=row.errors_only):
            page += line.encode() + b"\n"
            if len(page) >= 64 * 1024:
                yield bytes(page)
                page.clear()
        if page:
            yield bytes(page)

    # -- batches -------------------------------------------------------------------------

    async def create(self, principal: Principal | None, body: dict[str, Any],
                     routes: RouteTable) -> BatchRow:
        key_id = principal.key_id if principal is not None else None
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
            raise RequestError(f"endpoint must be one of {', '.join(ENDPOINTS)}.",
                               param="endpoint")
        window = body.get("completion_window", "24h")
        match = _WINDOW.match(window) if isinstance(window, str) else None
        if match is None or int(match.group(1)) > MAX_WINDOW_H:
            raise RequestError(f"completion_window must be hours, such as '24h' (at most "
                               f"{MAX_WINDOW_H}h).", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict)
                                     or len(metadata) > MAX_METADATA
                                     or not all(isinstance(v, str) for v in metadata.values())):
            raise RequestError(f"metadata must be an object of at most {MAX_METADATA} string "
                               "values.", param="metadata")
        file_id = body.get("input_file_id")
        found = await asyncio.to_thread(self.store.file, file_id) \
            if isinstance(file_id, str) and file_id.isprintable() and len(file_id) <= 64 \
            else None
        if found is None or found.key_id != key_id or found.purpose != "batch":
            raise RequestError(f"input_file_id: no batch input file {file_id!r} of this key.",
                               param="input_file_id")
        now = datetime.now(UTC)
        row = BatchRow(id=new_id("batch_"), key_id=key_id, endpoint=endpoint,
                       input_file_id=found.id, completion_window=window,
                       status="in_progress", created_at=now, in_progress_at=now,
                       expires_at=now + timedelta(hours=int(match.group(1))),
                       total=found.lines,
                       metadata=None if metadata is None else orjson.dumps(metadata).decode())

        def lines() -> Iterator[NewLine]:
            for line in lines_of(self.store.chunks(found.id)):
                if line.url != endpoint:
                    raise InvalidFile(f"Line {line.line_no}: url {line.url!r} is not the "
                                       f"batch's endpoint {endpoint!r}.", param="url")
                yield NewLine(line.line_no, line.custom_id, line.raw_body,
                              _refusal(line, principal, routes))

        await asyncio.to_thread(self.store.create_batch, row, lines())
        if self.runner is not None:
            self.runner.wake()
        return row

    async def batch(self, key_id: str | None, batch_id: str, kind: str = "batch") -> BatchRow:
        row = await asyncio.to_thread(self.store.batch, batch_id)
        if row is None or row.key_id != key_id or row.kind != kind:
            raise NotFound(f"No {kind} '{batch_id}'.", param=f"{kind}_id")
        return row

    # -- jobs: one request sent with Prefer: respond-async ---------------------------------

    async def queue(self, key_id: str | None, endpoint: str, raw_body: str,
                    idempotency_key: str | None = None) -> tuple[BatchRow, bool]:
        """A request queued as a job: a batch of one line, run and kept the same way. With
        an ``Idempotency-Key``, a repeat from the same caller gets the job the first one
        made (and True: it was replayed) instead of a second job."""
        scoped = None if idempotency_key is None else f"{key_id or ''}:{idempotency_key}"
        if scoped is not None:
            found = await asyncio.to_thread(self.store.by_idempotency_key, scoped)
            if found is not None:
                return found, True
        now = datetime.now(UTC)
        row = BatchRow(id=new_id("job_"), key_id=key_id, endpoint=endpoint,
                       input_file_id="", completion_window=JOB_WINDOW, status="in_progress",
                       created_at=now, in_progress_at=now,
                       expires_at=now + timedelta(hours=int(JOB_WINDOW[:-1])), total=1,
                       kind="job", idempotency_key=scoped)
        try:
            await asyncio.to_thread(self.store.create_batch, row,
                                    [NewLine(1, "job", raw_body)])
        except DuplicateJob:  # the same key at the same moment: the other one made it
            found = await asyncio.to_thread(self.store.by_idempotency_key, scoped or "")
            if found is None:
                raise
            return found, True
        if self.runner is not None:
            self.runner.wake()
        return row, False

    async def job(self, key_id: str | None, job_id: str) -> tuple[BatchRow, str | None]:
        """A job of this key, and its output line once it has one."""
        row = await self.batch(key_id, job_id, kind="job")
        status, kept = await asyncio.to_thread(self.store.only_line, job_id)
        return row, kept if status in ("done", "failed") else None

    async def cancel(self, key_id: str | None, batch_id: str) -> BatchRow:
        await self.batch(key_id, batch_id)
        await asyncio.to_thread(self.store.cancel, batch_id)
        if self.runner is not None:
            await self.runner.cancelled(batch_id)
        return await self.batch(key_id, batch_id)


def _refusal(line: Line, principal: Principal | None, routes: RouteTable) -> str | None:
    """The error line of a line that may not run: an unknown route, or one the key may not
    call (both "not found", as for an interactive request)."""
    model = line.body["model"]
    if model not in routes or (
            principal is not None
            and not principal.may_call(model, routes.get(model).settings.environment)):
        return output.refused(line.custom_id, "model_not_found",
                              f"The model '{model}' does not exist or you do not have "
                              "access to it.")
    return None
