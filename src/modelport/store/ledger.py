"""The ledger writer: request records go to the store in batches, off the request path.

``submit`` is a deque append. A background task flushes batches through a worker thread
(the SQL driver is synchronous); when the store is slow or down it keeps the records and
retries with backoff, so requests never wait on it. Records are dropped only when more than
``max_pending`` wait, when the store rejects a record itself, or at shutdown after the last
flush fails, and every drop is counted in ``modelport_ledger_dropped_total`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, insert
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from modelport.config.settings import StoreSettings
from modelport.errors import ConfigError
from modelport.observability.metrics import Metrics
from modelport.store.engine import make_engine, migrate
from modelport.store.tables import requests

log = logging.getLogger("modelport.ledger")
DROP_LOG_INTERVAL_S = 10.0  # the most often dropped records are logged
_MAX_BACKOFF_S = 30.0


class LedgerRecord(NamedTuple):
    """One row of the ``requests`` table, in column order; ``created_at`` is epoch seconds."""

    request_id: str
    created_at: float
    method: str
    path: str
    operation: str | None
    route: str | None
    target: str | None
    stream: bool
    status: int
    error_code: str | None
    latency_ms: float
    upstream_ms: float
    overhead_ms: float
    first_chunk_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    config_version: str
    client_disconnected: bool
    request_body: bytes | None
    response_body: bytes | None
    key_id: str | None = None
    environment: str | None = None
    cost_usd: float | None = None
    attempts: int | None = None
    attempt_log: str | None = None
    model_version: str | None = None
    queue_ms: float | None = None
    usage_estimated: bool | None = None
    prompt_version: str | None = None
    validation: str | None = None
    guards: str | None = None
    shadow_of: str | None = None
    shadow_match: bool | None = None
    batch_id: str | None = None


class LedgerWriter:
    def __init__(
        self,
        settings: StoreSettings,
        metrics: Metrics,
        engine_factory: Callable[[str], Engine] = make_engine,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.enabled = settings.ledger  # whether rows are written at all
        self._metrics = metrics
        self._clock = clock
        self._unlogged_drops: dict[str, int] = {}  # per reason, since the last log line
        self._drops_logged_at = -DROP_LOG_INTERVAL_S
        try:
            self._engine = engine_factory(settings.url)
        except (ArgumentError, SQLAlchemyError, ImportError) as exc:
            raise ConfigError([f"store.url: cannot use this database URL ({exc})"]) from None
        self._sql, self._row = _insert_statement(self._engine)
        self._pending: deque[LedgerRecord] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._migrated = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def lag_s(self) -> float:
        """How long the oldest record still waiting has waited (0 when none waits)."""
        if not self._pending:
            return 0.0
        return max(time.time() - self._pending[0].created_at, 0.0)

    def submit(self, record: LedgerRecord) -> None:
        if not self._settings.ledger:
            return
        if len(self._pending) >= self._settings.max_pending:
            self._drop(1, "overflow")
            return
        self._pending.append(record)
        if len(self._pending) >= self._settings.batch_size:
            self._wake.set()

    async def start(self) -> None:
        if self._settings.ledger:
            self._task = asyncio.create_task(self._run(), name="modelport-ledger")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what is pending within ``timeout_s``; count what could not be written."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:
                self._task.cancel()
        if self._pending:
            self._drop(len(self._pending), "shutdown")
            self._pending.clear()
        self._log_drops()
        await asyncio.to_thread(self._engine.dispose)

    async def _run(self) -> None:
        backoff = self._settings.retry_backoff_s
        while True:
            if not self._pending:
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.flush_interval_s)
                self._wake.clear()
                continue
            size = min(len(self._pending), self._settings.batch_size)
            batch = [self._pending[i] for i in range(size)]
            try:
                written = await asyncio.to_thread(self._write, batch)
            except (SQLAlchemyError, OSError) as exc:
                self._metrics.ledger_write_errors.inc()
                log.warning(
                    "ledger write failed; will retry",
                    extra={"error": type(exc).__name__, "pending": len(self._pending),
                           "retry_in_s": backoff},
                )
                self._metrics.ledger_pending.set(len(self._pending))
                if self._stopping:
                    return
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = self._settings.retry_backoff_s
            for _ in range(len(batch)):
                self._pending.popleft()
            self._metrics.ledger_written.inc(written)
            self._metrics.ledger_pending.set(len(self._pending))
            if len(batch) > written:
                self._drop(len(batch) - written, "rejected")

    async def _pause(self, seconds: float) -> None:
        """Wait out a retry backoff, cut short only by ``stop`` (so a final flush is still
        tried), never by new records arriving while the store is down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    def _write(self, batch: list[LedgerRecord]) -> int:
        """Write one batch; returns how many rows the store accepted."""
        if not self._migrated:
            migrate(self._engine)
            self._migrated = True
        try:
            self._insert(batch)
            return len(batch)
        except DBAPIError as exc:
            if _store_unavailable(exc):
                raise
        return self._write_one_by_one(batch)

    def _write_one_by_one(self, batch: list[LedgerRecord]) -> int:
        """A batch the store refused as data: keep every row it accepts."""
        written = 0
        for row in batch:
            try:
                self._insert([row])
                written += 1
            except DBAPIError as exc:
                if _store_unavailable(exc):
                    raise
        return written

    def _insert(self, batch: Sequence[LedgerRecord]) -> None:
        """One ``executemany`` of plain tuples: the driver's fast path, no per-row ORM work."""
        with self._engine.begin() as conn:
            conn.exec_driver_sql(self._sql, [self._row(r) for r in batch])

    def _drop(self, count: int, reason: str) -> None:
        """Count dropped records at once; log them at most once per DROP_LOG_INTERVAL_S, as
        one line per reason with the total since the last, so that a store that stays down
        under load does not flood the log with one line per request."""
        self._metrics.ledger_dropped.labels(reason).inc(count)
        self._unlogged_drops[reason] = self._unlogged_drops.get(reason, 0) + count
        if self._clock() - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            self._log_drops()

    def _log_drops(self) -> None:
        for reason, count in self._unlogged_drops.items():
            log.error("ledger records dropped", extra={
                "count": count, "reason": reason, "over_s": DROP_LOG_INTERVAL_S})
        self._unlogged_drops.clear()
        self._drops_logged_at = self._clock()


def _store_unavailable(exc: DBAPIError) -> bool:
    """Whether a failure says the store is unreachable (retry) rather than that it refused
    the data (write the rest row by row)."""
    if exc.connection_invalidated:
        return True
    return type(exc.orig).__name__ in ("OperationalError", "InterfaceError")


def _insert_statement(engine: Engine) -> tuple[str, Any]:
    """The INSERT compiled once for this dialect, and how to turn a record into its params."""
    fields = list(LedgerRecord._fields)
    # inline(): the database fills the id itself; nothing is fetched back
    statement = insert(requests).inline().values({name: bindparam(name) for name in fields})
    compiled = statement.compile(dialect=engine.dialect)
    to_row = _sqlite_row if engine.dialect.name == "sqlite" else _aware_row
    if compiled.positional:
        order = [fields.index(name) for name in compiled.positiontup or ()]
        if order == list(range(len(fields))):
            return str(compiled), to_row
        return str(compiled), lambda r: tuple(to_row(r)[i] for i in order)
    return str(compiled), lambda r: dict(zip(fields, to_row(r), strict=True))


def _sqlite_row(record: LedgerRecord) -> tuple[Any, ...]:
    # SQLAlchemy's storage format for DateTime on SQLite, so reads through it parse back
    second = int(record.created_at)
    micros = int((record.created_at - second) * 1_000_000)
    stamp = f"{_sqlite_second(second)}.{micros:06d}"
    return (record.request_id, stamp, *record[2:])


@functools.lru_cache(maxsize=8)
def _sqlite_second(second: int) -> str:
    """Records come in runs of the same second; format each second once."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))


def _aware_row(record: LedgerRecord) -> tuple[Any, ...]:
    return (record.request_id, datetime.fromtimestamp(record.created_at, UTC), *record[2:])


def ledger_row(record: LedgerRecord) -> dict[str, Any]:
    """A record as the values of one ``requests`` row (for writes that are part of another
    transaction, such as a batch line's answer)."""
    row = record._asdict()
    row["created_at"] = datetime.fromtimestamp(record.created_at, UTC)
    return row
