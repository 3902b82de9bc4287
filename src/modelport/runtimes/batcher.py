"""Adaptive batching: requests that arrive together become one model call.

Requests queue per model version. While the model is busy with one batch, the next one
gathers; when it is free, everything compatible that waits (same input names, datatypes
and trailing dimensions; same requested outputs) is joined along the first dimension, up to
``max_batch_size`` rows, and sent as one call. An idle model waits at most
``max_batch_delay`` for company before it runs what it has; with no delay it runs at once,
and under load the batches form by themselves while the model computes (a fixed wait would
only add latency to every cycle when few clients are waiting). The queue is bounded: a full
queue, or a request that waited past ``queue_timeout``, is answered at once with 503 and
Retry-After, never left hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from modelport.errors import Overloaded, UpstreamBadResponse

Arrays = dict[str, np.ndarray]
Run = Callable[[Arrays, list[str] | None], Awaitable[Arrays]]
_RETRY = {"Retry-After": "1"}


class _Item:
    __slots__ = ("arrived", "future", "inputs", "key", "names", "rows")

    def __init__(self, inputs: Arrays, names: list[str] | None, rows: int,
                 future: asyncio.Future[Arrays]) -> None:
        self.inputs = inputs
        self.names = names
        self.rows = rows
        self.future = future
        self.arrived = time.monotonic()
        self.key = (
            tuple((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()),
            tuple(names) if names is not None else None,
        )


class Batcher:
    def __init__(
        self,
        run: Run,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        queue_timeout_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._max_rows = max(max_batch_size, 1)
        self._batching = max_batch_size > 0
        self._max_delay_s = max_delay_s
        self._max_queue = max_queue
        self._queue_timeout_s = queue_timeout_s
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(self, inputs: Arrays, names: list[str] | None) -> Arrays:
        if len(self._queue) >= self._max_queue:
            raise Overloaded("The model's queue is full; try again shortly.", headers=_RETRY)
        rows = next(iter(inputs.values())).shape[0] if self._batching else 1
        item = _Item(inputs, names, rows, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._queued_rows += rows
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        elif self._queued_rows >= self._max_rows:
            self._wake.set()
        return await item.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(Overloaded("The model was unloaded.", headers=_RETRY))
        self._queue.clear()

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._gather()
                batch = self._take()
                if batch:
                    await self._dispatch(batch)
        finally:
            self._task = None

    async def _gather(self) -> None:
        """Let an idle model wait briefly for company, unless the batch is already full."""
        if not self._batching or self._max_delay_s <= 0:
            return
        wait = self._queue[0].arrived + self._max_delay_s - time.monotonic()
        if wait > 0 and self._queued_rows < self._max_rows:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _take(self) -> list[_Item]:
        now = time.monotonic()
        first: _Item | None = None
        batch: list[_Item] = []
        rows = 0
        kept: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():  # the caller went away
                self._queued_rows -= item.rows
                continue
            if now - item.arrived > self._queue_timeout_s:
                self._queued_rows -= item.rows
                item.future.set_exception(Overloaded(
                    "The request waited longer than the model's queue timeout.", headers=_RETRY))
                continue
            fits = first is None or (
                self._batching and item.key == first.key and rows + item.rows <= self._max_rows)
            if fits:
                first = first or item
                batch.append(item)
                rows += item.rows
                self._queued_rows -= item.rows
            else:
                kept.append(item)
            if rows >= self._max_rows or not self._batching:
                break
        kept.extend(self._queue)
        self._queue = kept
        return batch

    async def _dispatch(self, batch: list[_Item]) -> None:
        names = batch[0].names
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {n: np.concatenate([b.inputs[n] for b in batch]) for n in batch[0].inputs}
        if self._on_batch is not None:
            self._on_batch(sum(b.rows for b in batch))
        try:
            outputs = await self._run(inputs, names)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
            return
        self._split(batch, outputs)

    @staticmethod
    def _split(batch: list[_Item], outputs: Arrays) -> None:
        total = sum(b.rows for b in batch)
        bad = [n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != total]
        offset = 0
        for item in batch:
            if item.future.done():
                offset += item.rows
                continue
            if bad:
                item.future.set_exception(UpstreamBadResponse(
                    f"Output {bad[0]!r} has no batch dimension; set max_batch_size: 0 "
                    "for this model."))
                continue
            end = offset + item.rows
            item.future.set_result({n: a[offset:end] for n, a in outputs.items()})
            offset = end

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Batcher(queued={len(self._queue)}, rows={self._queued_rows})"


def rows_of(inputs: dict[str, Any]) -> int:
    """The batch dimension shared by every input, or -1 when they disagree."""
    sizes = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else -1
