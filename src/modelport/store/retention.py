"""Deleting captured bodies after their route's ``retention_days``: once at start, then
every ``interval_s``, off the request path (the deletes run in a worker thread)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from modelport.errors import ServiceUnavailable
from modelport.store.requests import RequestStore

log = logging.getLogger("modelport.retention")


class BodyRetention:
    def __init__(self, store: RequestStore, days_by_route: Mapping[str, float],
                 interval_s: float = 3600.0) -> None:
        self._store = store
        self._days = dict(days_by_route)
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._days:
            self._task = asyncio.create_task(self._run(), name="modelport-retention")

    async def use(self, days_by_route: Mapping[str, float]) -> None:
        """Another config version's retention (running from now on if it has any)."""
        self._days = dict(days_by_route)
        if self._days and self._task is None:
            await self.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        """Delete what is due now; the number of requests whose bodies were deleted."""
        deleted = 0
        now = datetime.now(UTC)
        for route, days in self._days.items():
            deleted += await asyncio.to_thread(
                self._store.purge_bodies, route, now - timedelta(days=days))
        if deleted:
            log.info("captured bodies deleted", extra={"requests": deleted})
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except ServiceUnavailable as exc:
                log.warning("retention sweep failed; will retry", extra={"reason": str(exc)})
            await asyncio.sleep(self._interval_s)
