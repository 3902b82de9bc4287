"""The batch runner: each server's background loop that leases batch lines and runs them.

Lines run through the same use case as interactive requests (``ProxyService.call``): the
key's access, limits and budget, the route's fallbacks, breakers and output contracts, the
metrics and the log line; in the background, so that where a target has a concurrency cap,
a line takes only the capacity interactive requests leave (``admission.gate``). A line's
answer and its ledger row (marked with the batch's id) are kept together, by the server
that still holds the line's lease (``store.batches``): a line is answered and billed once.

What a line cannot do yet is not a failure: over a limit, overloaded or switched off, it
goes back to wait; when the key's budget runs out, its batch is paused, and every paused
batch is tried again a minute later. A server that stops hands its running lines back; a
server that dies leaves them to be leased again once their lease runs out, and the provider
gets the same ``Idempotency-Key`` for the line (``<batch id>-<line>``) on every try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import orjson

from modelport.admission.gate import BACKGROUND
from modelport.batch import output
from modelport.batch.input import ENDPOINTS
from modelport.config.settings import BatchSettings
from modelport.core.context import RequestContext
from modelport.errors import (
    AuthError,
    BudgetExceeded,
    Disabled,
    InternalError,
    ModelportError,
    Overloaded,
    RateLimited,
    RuntimeUnavailable,
    ServiceUnavailable,
)
from modelport.inference.proxy import ProxyService
from modelport.inference.recorder import Recorder
from modelport.observability.metrics import Metrics
from modelport.policy.access import AccessPolicy
from modelport.protocol.openai.errors import error_body
from modelport.providers.base import UpstreamReply
from modelport.routing.table import RouteTable
from modelport.store.batches import BatchRow, BatchStore, FinishedLine, LeasedLine
from modelport.store.ledger import LedgerRecord

log = logging.getLogger("modelport.batch")
RESUME_PAUSED_S = 60.0  # a paused batch tries its key's budget again this often
MAX_TRIES = 5  # a line whose server died (or whose answer could not be kept) this often fails
PURGE_EVERY_S = 3600.0  # files and ended batches past batch.retention_days are deleted
_WAIT = (RateLimited, Overloaded, Disabled, RuntimeUnavailable, ServiceUnavailable)


class Serving(Protocol):
    """What a line needs from the config version in force (``api.services.Services``)."""

    @property
    def proxy(self) -> ProxyService: ...

    @property
    def recorder(self) -> Recorder: ...

    @property
    def access(self) -> AccessPolicy: ...

    @property
    def routes(self) -> RouteTable: ...


class BatchRunner:
    def __init__(self, store: BatchStore, serving: Callable[[], Serving],
                 settings: BatchSettings, metrics: Metrics,
                 new_request_id: Callable[[], str]) -> None:
        self._store = store
        self._serving = serving
        self._settings = settings
        self._metrics = metrics
        self._new_request_id = new_request_id
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(3).hex()}"
        self._running: dict[int, asyncio.Task[None]] = {}  # lines calling their model
        self._ready: deque[LeasedLine] = deque()  # leased ahead, to start as room frees
        self._orphans: list[int] = []  # leased lines of batches paused meanwhile
        self._work = True  # some batch may have lines to lease (idle: checked on the poll)
        self._finishing: dict[int, asyncio.Task[None]] = {}  # answered, being kept
        self._batches: dict[str, BatchRow] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keeper = _Keeper(store, self.owner)
        self._stopping = False

    def wake(self) -> None:
        """Look for work now (a batch was created or resumed)."""
        self._work = True
        self._wake.set()

    async def cancelled(self, batch_id: str) -> None:
        """A batch was cancelled here: the lines of it leased ahead never start."""
        self._batches.pop(batch_id, None)
        dropped = [line.id for line in self._ready if line.batch_id == batch_id]
        if dropped:
            self._ready = deque(line for line in self._ready if line.batch_id != batch_id)
            await asyncio.to_thread(self._store.release_all, dropped, self.owner)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="modelport-batch")

    async def stop(self) -> None:
        """Stop leasing; hand the lines still running (and those leased ahead) back, for
        the next server."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        lines = [*self._running, *(line.id for line in self._ready), *self._orphans]
        self._ready.clear()
        tasks = [*self._running.values(), *self._finishing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._keeper.drain()
        if lines:
            with contextlib.suppress(ModelportError):
                await asyncio.to_thread(self._store.release_all, lines, self.owner)

    async def _loop(self) -> None:
        """Lease lines ahead of need (a quarter of the concurrency at a time, so that a
        busy runner makes one store round trip per several lines, and a line frees its room
        to a leased one at once); renew leases, retry paused batches and end finished
        batches on the poll's beat, or at once when the work runs out."""
        concurrency = self._settings.concurrency
        ahead = max(1, concurrency // 4)
        renewed = resumed = polled = time.monotonic()
        purged = -PURGE_EVERY_S
        while not self._stopping:
            try:
                now = time.monotonic()
                room = concurrency + ahead - len(self._running) - len(self._ready)
                due = now - polled >= self._settings.poll_s
                short = False
                if due and not self._work:  # idle: one cheap read, no write, per poll
                    self._work = await asyncio.to_thread(self._store.has_work)
                if self._work and (room >= ahead or (room and due)):
                    leased = await self._lease(room)
                    short = leased < room
                    self._work = leased > 0 or bool(self._running or self._ready)
                if self._orphans:
                    orphans, self._orphans = self._orphans, []
                    await asyncio.to_thread(self._store.release_all, orphans, self.owner)
                if due or short:
                    polled = now
                    if now - renewed >= self._settings.lease_s / 3:
                        renewed = now
                        await asyncio.to_thread(
                            self._store.renew, self.owner,
                            [*self._running, *self._finishing,
                             *(line.id for line in self._ready)],
                            time.time() + self._settings.lease_s)
                        self._forget_idle_batches()
                    if now - resumed >= RESUME_PAUSED_S:
                        resumed = now
                        await asyncio.to_thread(self._store.resume_paused)
                    if now - purged >= PURGE_EVERY_S and self._settings.retention_days:
                        purged = now
                        await asyncio.to_thread(self._store.purge, datetime.now(UTC) - timedelta(
                            days=self._settings.retention_days))
                    await self._settle()
            except ModelportError as exc:  # the store is unreachable: try again later
                log.warning("batch_loop_failed", extra={"error": exc.message})
            except Exception:
                log.exception("batch_loop_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)

    def _forget_idle_batches(self) -> None:
        """Keep only the batch rows of lines leased ahead (a batch another server ended
        is not kept for ever; one still running here is read again at its next lease)."""
        live = {line.batch_id for line in self._ready}
        self._batches = {k: v for k, v in self._batches.items() if k in live}

    async def _settle(self) -> None:
        ended = await asyncio.to_thread(self._store.settle, datetime.now(UTC), output.expired)
        for batch_id in ended:
            self._batches.pop(batch_id, None)
            self._metrics.batches_ended.inc()

    async def _lease(self, room: int) -> int:
        """Up to ``room`` lines leased, and started as far as the concurrency allows; how
        many were leased."""
        leased = await asyncio.to_thread(self._store.lease, self.owner, time.time(),
                                         self._settings.lease_s, room)
        self._ready.extend(leased)  # held here from now on: renewed, or handed back
        for batch_id in {line.batch_id for line in leased} - set(self._batches):
            batch = await asyncio.to_thread(self._store.batch, batch_id)
            if batch is not None:
                self._batches[batch_id] = batch
        self._start_ready()
        return len(leased)

    def _start_ready(self) -> None:
        while self._ready and len(self._running) < self._settings.concurrency \
                and not self._stopping:
            line = self._ready.popleft()
            batch = self._batches.get(line.batch_id)
            if batch is None:  # paused or cancelled meanwhile: handed back
                self._orphans.append(line.id)
                continue
            task = asyncio.create_task(self._line(batch, line))
            self._running[line.id] = task

    def _called(self, line_id: int) -> None:
        """A line's call is over: its room goes to the next line at once."""
        task = self._running.pop(line_id, None)
        if task is not None:
            self._finishing[line_id] = task
            task.add_done_callback(lambda _t: self._finishing.pop(line_id, None))
        self._start_ready()
        if not self._stopping:
            self._wake.set()

    async def _line(self, batch: BatchRow, line: LeasedLine) -> None:
        serving = self._serving()
        ctx = RequestContext(request_id=self._new_request_id(), method="POST",
                             path=batch.endpoint, client="batch", recorded=True,
                             batch_id=batch.id, key_id=batch.key_id)
        if line.tries > MAX_TRIES:
            self._called(line.id)
            await self._keep(line, ok=False, record=None, kept=output.refused(
                line.custom_id, "batch_line_failed",
                f"The line was started {MAX_TRIES} times and never answered."))
            return
        result: UpstreamReply | Exception
        try:
            result = await self._call(serving, batch, line, ctx)
        except Exception as exc:
            result = exc
        finally:
            self._called(line.id)
        if isinstance(result, BudgetExceeded):
            await self._wait(line, result, pause=batch)
            return
        if isinstance(result, _WAIT):
            await self._wait(line, result)
            return
        if isinstance(result, UpstreamReply):
            ctx.status = result.status
            ok, status, body = result.ok, result.status, result.body
        else:
            error = result if isinstance(result, ModelportError) else InternalError(
                ctx.request_id)
            if error is not result:
                log.error("batch_line_failed", exc_info=result,
                          extra={"request_id": ctx.request_id})
            ctx.status, ctx.error_code = error.status, error.code
            ok, status, body = False, error.status, error_body(error)
        await self._finish(serving, line, ctx, ok=ok,
                           kept=output.answered(line.custom_id, ctx.request_id, status, body))

    async def _call(self, serving: Serving, batch: BatchRow, line: LeasedLine,
                    ctx: RequestContext) -> UpstreamReply:
        access = serving.access
        principal = None
        if batch.key_id is not None and access.auth_required:
            principal = access.keyring.principal(batch.key_id)
            if principal is None or not principal.alive(time.time()):
                raise AuthError("The batch's API key is unknown, expired or revoked.")
        body = orjson.loads(line.body)
        route = body.get("model")
        if route in serving.routes and not any(
                t.gate.has_spare() for t in serving.routes.get(route).targets):
            # no target has room: wait without taking a request from the key's limits
            raise Overloaded("No spare capacity for batch lines.", headers={"Retry-After": "1"})
        answer = await serving.proxy.call(
            ENDPOINTS[batch.endpoint], body, line.body.encode(), ctx, principal,
            priority=BACKGROUND, idempotency_key=f"{batch.id}-{line.line_no}")
        result = answer.result
        assert isinstance(result, UpstreamReply)  # batch lines never stream
        return result

    async def _finish(self, serving: Serving, line: LeasedLine, ctx: RequestContext, *,
                      ok: bool, kept: str) -> None:
        await self._keep(line, ok=ok, kept=kept, record=serving.recorder.finish(ctx, keep=True))

    async def _keep(self, line: LeasedLine, *, ok: bool, kept: str,
                    record: LedgerRecord | None) -> None:
        try:
            finished = await self._keeper.keep(FinishedLine(line.id, ok, kept, record))
        except Exception as exc:  # not kept: the line runs again once its lease ends
            log.warning("batch_line_not_kept", extra={"error": str(exc)[:200]})
            return
        outcome = ("done" if ok else "failed") if finished else "dropped"
        self._metrics.batch_lines.labels(outcome).inc()

    async def _wait(self, line: LeasedLine, exc: ModelportError,
                    pause: BatchRow | None = None) -> None:
        """A line that cannot run yet goes back, to be tried after the error's
        Retry-After (a second when it has none); a budget that ran out pauses the batch."""
        retry_after = exc.headers.get("Retry-After")
        delay = float(retry_after) if retry_after and retry_after.isdecimal() else 1.0
        self._metrics.batch_lines.labels("paused" if pause else "waiting").inc()
        try:
            await asyncio.to_thread(self._store.release, line.id, self.owner,
                                    time.time() + delay)
            if pause is not None:
                await asyncio.to_thread(self._store.pause, pause.id, exc.message)
                self._batches.pop(pause.id, None)
        except Exception as failed:  # the store failed: the line's lease runs out instead
            log.warning("batch_line_not_released", extra={"error": str(failed)[:200]})


class _Keeper:
    """Finished lines written in groups: every line that finishes while one group is being
    written goes in the next, in one transaction, so that a busy runner makes one store
    round trip per many lines. Each line's caller learns whether its line was kept."""

    def __init__(self, store: BatchStore, owner: str) -> None:
        self._store = store
        self._owner = owner
        self._pending: list[tuple[FinishedLine, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def keep(self, line: FinishedLine) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((line, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def drain(self) -> None:
        """Wait for the group being written (its lines are kept or not, not left halfway)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                kept = await asyncio.to_thread(self._store.finish, self._owner,
                                               [line for line, _ in group])
            except Exception as exc:
                if len(group) > 1:  # one line's row may be what the store refused
                    self._pending = [*group, *self._pending]
                    await self._one_by_one()
                    continue
                for _, future in group:  # the store failed: the line runs again later
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), was_kept in zip(group, kept, strict=True):
                if not future.done():
                    future.set_result(was_kept)

    async def _one_by_one(self) -> None:
        group, self._pending = self._pending, []
        for line, future in group:
            try:
                [was_kept] = await asyncio.to_thread(self._store.finish, self._owner, [line])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(was_kept)
