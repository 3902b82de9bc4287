"""``Idempotency-Key``: a client's retry of a request returns the first answer.

Per key and per caller (the principal's key id), the first request with a given
``Idempotency-Key`` runs; a repeat while it runs waits for it, and a repeat afterwards gets
the stored answer, for ``ttl_s``. Only whole (non-streamed) answers are kept, and only
successful ones: a failure may be retried for real. Entries live in this process's memory,
bounded by ``max_entries`` (oldest dropped first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelport.errors import RequestError
from modelport.providers.base import UpstreamReply

MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class Stored:
    reply: UpstreamReply
    headers: tuple[tuple[bytes, bytes], ...]
    route: str | None
    target: str | None


class IdempotencyCache:
    def __init__(
        self, ttl_s: float, max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._done: OrderedDict[tuple[str, str], tuple[float, Stored]] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Future[Stored]] = {}

    @staticmethod
    def check(key: bytes) -> str:
        text = key.decode("latin-1")
        if not 0 < len(text) <= MAX_KEY_CHARS or not text.isprintable():
            raise RequestError(
                f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters.",
                param="Idempotency-Key")
        return text

    async def run(
        self, owner: str, key: str, serve: Callable[[], Awaitable[Stored]]
    ) -> tuple[Stored, bool]:
        """The answer for (owner, key), and whether it was replayed rather than served."""
        slot = (owner, key)
        now = self._clock()
        done = self._done.get(slot)
        if done is not None:
            if done[0] > now:
                return done[1], True
            del self._done[slot]
        running = self._running.get(slot)
        if running is not None:
            return await asyncio.shield(running), True
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._running[slot] = future
        try:
            stored = await serve()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a repeat that waited sees it, nobody else must
            raise
        finally:
            del self._running[slot]
        future.set_result(stored)
        if stored.reply.ok:
            self._done[slot] = (now + self._ttl, stored)
            while len(self._done) > self._max:
                self._done.popitem(last=False)
        return stored, False
