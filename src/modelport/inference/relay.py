"""Relaying a provider's stream to the client, event by event, as it arrives.

A small state object rather than one long generator: it splits the byte stream into whole
SSE events, forwards each at once, notes the usage chunk, times the first chunk and the
upstream, and turns a failure after the first byte into a final SSE error event.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from modelport.core.context import RequestContext
from modelport.core.pricing import Price
from modelport.core.usage import Usage
from modelport.errors import ModelportError, UpstreamError, UpstreamTimeout
from modelport.inference.attempt_end import AttemptEnd
from modelport.inference.validation import StreamVerdict
from modelport.policy.guards import StreamRestorer
from modelport.protocol.openai.errors import error_event
from modelport.protocol.openai.stream import UsageTap
from modelport.protocol.sse import EventSplitter, event_data
from modelport.providers.base import UpstreamStream

log = logging.getLogger("modelport.relay")


class StreamRelay:
    __slots__ = ("_ctx", "_deadline", "_end", "_idle", "_price", "_splitter", "_tap",
                 "_upstream", "restorer", "verdict")

    def __init__(
        self,
        upstream: UpstreamStream,
        ctx: RequestContext,
        end: AttemptEnd[Any],
        *,
        strip_usage_chunk: bool,
        price: Price | None = None,
        idle_timeout_s: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self._deadline = deadline
        self._upstream = upstream
        self._ctx = ctx
        self._end = end  # the attempt that opened the stream ends when the stream does
        self._splitter = EventSplitter()
        self._tap = UsageTap(strip_usage_chunk=strip_usage_chunk)
        self._price = price
        self._idle = idle_timeout_s
        # an output contract checked as the stream passes, its verdict the last event
        self.verdict: StreamVerdict | None = None
        # masked values put back into the text as it passes (input guards' restore)
        self.restorer: StreamRestorer | None = None

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
        """The bytes to send to the client; ends with the provider's ``[DONE]`` or an error.
        The attempt ends with the stream: succeeded, failed (the provider cut it, stalled or
        ran past the deadline), or abandoned (the client left)."""
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
            ending = self._ending()  # a stream that ended without [DONE]
            if ending:
                yield ending
            self._end.succeed(*self._usage())
        except ModelportError as exc:
            self._ctx.error_code = exc.code
            self._end.fail(isinstance(exc, UpstreamError), **self._usage_kw())
            log.warning("stream failed after it started",
                        extra={"request_id": self._ctx.request_id, "code": exc.code})
            yield error_event(exc)
        finally:
            self._end.abandon(**self._usage_kw())  # ends it only if nothing above did
            await self._upstream.aclose()

    def _usage(self) -> tuple[Usage | None, float | None]:
        """The usage the stream reported (noted on the request) and its cost."""
        usage = self._ctx.usage = self._tap.usage
        if usage is not None and self._price is not None:
            self._ctx.cost_usd = self._price.cost(usage)
        return usage, self._ctx.cost_usd

    def _usage_kw(self) -> dict[str, Any]:
        usage, cost = self._usage()
        return {"usage": usage, "cost_usd": cost, "served": True}

    def _forwardable(self, chunk: bytes) -> bytes:
        events = self._splitter.feed(chunk)
        if self.verdict is not None or self.restorer is not None:
            return b"".join(self._filtered(e) for e in events if self._tap.forward(e))
        if len(events) == 1:
            return events[0] if self._tap.forward(events[0]) else b""
        return b"".join(e for e in events if self._tap.forward(e))

    def _filtered(self, event: bytes) -> bytes:
        """One event through the restorer and the verdict; before ``[DONE]``, what they
        still hold."""
        if event_data(event) == b"[DONE]":
            return self._ending() + event
        if self.restorer is not None:
            event = self.restorer.pass_on(event)
        if self.verdict is not None:
            event = self.verdict.pass_on(event)
        return event

    def _ending(self) -> bytes:
        out = b""
        if self.restorer is not None:
            out = self.restorer.flush()
            if out and self.verdict is not None:
                out = self.verdict.pass_on(out)
        if self.verdict is not None:
            out += self.verdict.final()
        return out

    async def aclose(self) -> None:
        """Let go of the provider when the stream was never run to its end (the client left
        before it began): the attempt is abandoned, what was reserved is charged."""
        self._end.abandon(**self._usage_kw())
        await self._upstream.aclose()
