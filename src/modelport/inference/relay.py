"""Relaying a provider's stream to the client, event by event, as it arrives.

A small state object rather than one long generator: it splits the byte stream into whole
SSE events, forwards each at once, notes the usage chunk, times the first chunk and the
upstream, and turns a failure after the first byte into a final SSE error event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator

from modelport.admission.gate import Slot
from modelport.core.context import RequestContext
from modelport.core.pricing import Price
from modelport.errors import ModelportError, UpstreamError, UpstreamTimeout
from modelport.policy.access import Ticket
from modelport.protocol.openai.errors import error_event
from modelport.protocol.openai.stream import UsageTap
from modelport.protocol.sse import EventSplitter
from modelport.providers.base import UpstreamStream
from modelport.routing.breaker import CircuitBreaker

log = logging.getLogger("modelport.relay")


class StreamRelay:
    __slots__ = ("_breaker", "_ctx", "_deadline", "_idle", "_price", "_slot", "_splitter",
                 "_started", "_tap", "_ticket", "_upstream")

    def __init__(
        self,
        upstream: UpstreamStream,
        ctx: RequestContext,
        *,
        started: float,
        strip_usage_chunk: bool,
        price: Price | None = None,
        ticket: Ticket | None = None,
        slot: Slot | None = None,
        idle_timeout_s: float | None = None,
        breaker: CircuitBreaker | None = None,
        deadline: float | None = None,
    ) -> None:
        self._deadline = deadline
        self._upstream = upstream
        self._ctx = ctx
        self._started = started
        self._splitter = EventSplitter()
        self._tap = UsageTap(strip_usage_chunk=strip_usage_chunk)
        self._price = price
        self._ticket = ticket
        self._slot = slot
        self._idle = idle_timeout_s
        self._breaker = breaker

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The provider's chunks; a gap longer than the idle timeout, or the request's
        deadline passing, ends the stream."""
        chunks = self._upstream.chunks()
        if self._idle is None and self._deadline is None:
            async for chunk in chunks:
                yield chunk
            return
        loop = asyncio.get_running_loop()
        while True:
            limit = self._deadline if self._deadline is not None else math.inf
            stalled = False
            if self._idle is not None and loop.time() + self._idle < limit:
                limit, stalled = loop.time() + self._idle, True
            try:
                async with asyncio.timeout_at(limit if limit != math.inf else None):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                reason = (f"The stream stalled for more than {self._idle:g} s." if stalled
                          else "The request's deadline passed during the stream.")
                raise UpstreamTimeout(reason) from None
            yield chunk

    async def events(self) -> AsyncIterator[bytes]:
        """The bytes to send to the client; ends with the provider's ``[DONE]`` or an error."""
        last = 0.0
        try:
            async for chunk in self._chunks():
                out = self._forwardable(chunk)
                if out:
                    now = self._ctx.elapsed()
                    if self._ctx.first_chunk_s is None:
                        self._ctx.first_chunk_s = now
                    else:
                        self._ctx.chunk_gaps.append(now - last)
                    last = now
                    yield out
            tail = self._splitter.flush()
            if tail.strip():
                yield tail
            self._verdict(ok=True)
        except ModelportError as exc:
            self._ctx.error_code = exc.code
            self._verdict(ok=not isinstance(exc, UpstreamError))
            log.warning("stream failed after it started",
                        extra={"request_id": self._ctx.request_id, "code": exc.code})
            yield error_event(exc)
        finally:
            self._ctx.upstream_s = time.perf_counter() - self._started
            self._ctx.usage = self._tap.usage
            self._settle()
            self._verdict(ok=None)
            await self._upstream.aclose()

    def _verdict(self, *, ok: bool | None) -> None:
        """Tell the target's breaker how the stream went, once (None: no verdict)."""
        breaker, self._breaker = self._breaker, None
        if breaker is None:
            return
        if ok is None:
            breaker.release_probe_without_result()
        elif ok:
            breaker.record_success()
        else:
            breaker.record_failure()

    def _settle(self) -> None:
        usage = self._ctx.usage
        if usage is not None and self._price is not None:
            self._ctx.cost_usd = self._price.cost(usage)
        if self._ticket is not None:
            self._ticket.finish(usage, self._ctx.cost_usd, served=True)
        if self._slot is not None:
            self._slot.release()

    def _forwardable(self, chunk: bytes) -> bytes:
        events = self._splitter.feed(chunk)
        if len(events) == 1:
            return events[0] if self._tap.forward(events[0]) else b""
        return b"".join(e for e in events if self._tap.forward(e))

    async def aclose(self) -> None:
        """Let go of the provider; settles the ticket if the stream never ran to its end."""
        if self._ticket is not None:
            self._ticket.finish(self._tap.usage, self._ctx.cost_usd, served=True)
        if self._slot is not None:
            self._slot.release()
        self._verdict(ok=None)  # the client left before the end: no verdict on the target
        await self._upstream.aclose()
