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
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
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
from modelport.store.batches import BatchRow, BatchStore, LeasedLine

log = logging.getLogger("modelport.batch")
RESUME_PAUSED_S = 60.0  # a paused batch tries its key's budget again this often
_WAIT = (RateLimited, Overloaded, Disabled, RuntimeUnavailable, ServiceUnavailable)


class Serving(Protocol):
    """What a line needs from the config version in force (``api.services.Services``)."""

    @property
    def proxy(self) -> ProxyService: ...

    @property
    def recorder(self) -> Recorder: ...

    @property
    def access(self) -> AccessPolicy: ...


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
        self._running: dict[int, asyncio.Task[None]] = {}
        self._batches: dict[str, BatchRow] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for work now (a batch was created or resumed)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="modelport-batch")

    async def stop(self) -> None:
        """Stop leasing; hand the lines still running back, for the next server."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        lines = list(self._running)
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        for line_id in lines:
            with contextlib.suppress(ModelportError):
                await asyncio.to_thread(self._store.release, line_id, self.owner, 0.0)

    async def _loop(self) -> None:
        """Lease lines as room frees (a few at a time, so that a busy runner makes one
        store round trip per several lines); renew leases, retry paused batches and end
        finished batches on the poll's beat, or at once when the work is running out."""
        renewed = resumed = polled = time.monotonic()
        while not self._stopping:
            try:
                now = time.monotonic()
                free = self._settings.concurrency - len(self._running)
                due = now - polled >= self._settings.poll_s
                short = False
                if free >= max(1, self._settings.concurrency // 4) or (free and due):
                    short = await self._lease(free) < free
                if not (due or short):
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)
                    continue
                polled = now
                if now - renewed >= self._settings.lease_s / 3:
                    renewed = now
                    await asyncio.to_thread(self._store.renew, self.owner,
                                            list(self._running),
                                            time.time() + self._settings.lease_s)
                if now - resumed >= RESUME_PAUSED_S:
                    resumed = now
                    await asyncio.to_thread(self._store.resume_paused)
                ended = await asyncio.to_thread(self._store.settle, datetime.now(UTC),
                                                output.expired)
                for batch_id in ended:
                    self._batches.pop(batch_id, None)
                    self._metrics.batches_ended.inc()
            except ModelportError as exc:  # the store is unreachable: try again later
                log.warning("batch_loop_failed", extra={"error": exc.message})
            except Exception:
                log.exception("batch_loop_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)

    async def _lease(self, free: int) -> int:
        """Up to ``free`` lines leased and started; how many."""
        leased = await asyncio.to_thread(self._store.lease, self.owner, time.time(),
                                         self._settings.lease_s, free)
        for line in leased:
            batch = self._batches.get(line.batch_id)
            if batch is None:
                batch = await asyncio.to_thread(self._store.batch, line.batch_id)
                if batch is None:
                    continue
                self._batches[line.batch_id] = batch
            task = asyncio.create_task(self._line(batch, line))
            self._running[line.id] = task
            task.add_done_callback(functools.partial(self._done, line.id))
        return len(leased)

    def _done(self, line_id: int, _task: asyncio.Task[None]) -> None:
        self._running.pop(line_id, None)
        if not self._stopping:
            self._wake.set()  # room for another line

    async def _line(self, batch: BatchRow, line: LeasedLine) -> None:
        serving = self._serving()
        ctx = RequestContext(request_id=self._new_request_id(), method="POST",
                             path=batch.endpoint, client="batch", recorded=True,
                             batch_id=batch.id, key_id=batch.key_id)
        try:
            reply = await self._call(serving, batch, line, ctx)
        except BudgetExceeded as exc:
            await self._wait(line, exc, pause=batch)
            return
        except _WAIT as exc:
            await self._wait(line, exc)
            return
        except ModelportError as exc:
            ctx.status, ctx.error_code = exc.status, exc.code
            kept = output.answered(line.custom_id, ctx.request_id, exc.status, error_body(exc))
            await self._finish(serving, line, ctx, ok=False, kept=kept)
            return
        except Exception:
            log.exception("batch_line_failed", extra={"request_id": ctx.request_id})
            error = InternalError(ctx.request_id)
            ctx.status, ctx.error_code = error.status, error.code
            kept = output.answered(line.custom_id, ctx.request_id, error.status,
                                   error_body(error))
            await self._finish(serving, line, ctx, ok=False, kept=kept)
            return
        ctx.status = reply.status
        await self._finish(serving, line, ctx, ok=reply.ok,
                           kept=output.answered(line.custom_id, ctx.request_id, reply.status,
                                                reply.body))

    async def _call(self, serving: Serving, batch: BatchRow, line: LeasedLine,
                    ctx: RequestContext) -> UpstreamReply:
        access = serving.access
        principal = None
        if batch.key_id is not None and access.auth_required:
            principal = access.keyring.principal(batch.key_id)
            if principal is None or not principal.alive(time.time()):
                raise AuthError("The batch's API key is unknown, expired or revoked.")
        body = orjson.loads(line.body)
        answer = await serving.proxy.call(
            ENDPOINTS[batch.endpoint], body, line.body.encode(), ctx, principal,
            priority=BACKGROUND, idempotency_key=f"{batch.id}-{line.line_no}")
        result = answer.result
        assert isinstance(result, UpstreamReply)  # batch lines never stream
        return result

    async def _finish(self, serving: Serving, line: LeasedLine, ctx: RequestContext, *,
                      ok: bool, kept: str) -> None:
        record = serving.recorder.finish_kept(ctx)
        try:
            finished = await asyncio.to_thread(self._store.finish, line.id, self.owner,
                                               ok=ok, output=kept, record=record)
        except ModelportError as exc:  # not kept: the line runs again once its lease ends
            log.warning("batch_line_not_kept", extra={"error": exc.message})
            return
        outcome = ("done" if ok else "failed") if finished else "dropped"
        self._metrics.batch_lines.labels(outcome).inc()

    async def _wait(self, line: LeasedLine, exc: ModelportError,
                    pause: BatchRow | None = None) -> None:
        """A line that cannot run yet goes back, to be tried after the error's
        Retry-After (a second when it has none); a budget that ran out pauses the batch."""
        retry_after = exc.headers.get("Retry-After")
        delay = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
        self._metrics.batch_lines.labels("paused" if pause else "waiting").inc()
        with contextlib.suppress(ModelportError):
            await asyncio.to_thread(self._store.release, line.id, self.owner,
                                    time.time() + delay)
            if pause is not None:
                await asyncio.to_thread(self._store.pause, pause.id, exc.message)
                self._batches.pop(pause.id, None)
