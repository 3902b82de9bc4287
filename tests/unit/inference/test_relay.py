"""StreamRelay: whole events forwarded as they arrive, usage noted, failures as a last event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import orjson

from modelport.admission.gate import Gate, GateSettings
from modelport.config.settings import BreakerSettings
from modelport.core.context import RequestContext
from modelport.core.usage import Usage
from modelport.errors import ModelportError, UpstreamTimeout
from modelport.inference.attempt_end import AttemptEnd
from modelport.inference.relay import StreamRelay
from modelport.protocol.sse import event_data
from modelport.routing.breaker import CircuitBreaker

CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"


class FakeUpstream:
    """An UpstreamStream that yields scripted chunks, then optionally fails."""

    def __init__(self, chunks: list[bytes], fail_with: ModelportError | None = None) -> None:
        self._chunks = chunks
        self._fail_with = fail_with
        self.closed = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._fail_with is not None:
            raise self._fail_with

    async def aclose(self) -> None:
        self.closed += 1


def context() -> RequestContext:
    return RequestContext(request_id="req-1", method="POST", path="/v1/chat/completions")


async def relay_all(upstream: FakeUpstream, ctx: RequestContext, *, strip: bool) -> list[bytes]:
    slot = await Gate(GateSettings()).acquire()
    target = SimpleNamespace(breaker=CircuitBreaker(BreakerSettings(), time.monotonic),
                             watch=None, is_canary=False)
    end = AttemptEnd(target, slot, ctx)  # type: ignore[arg-type]
    relay = StreamRelay(upstream, ctx, end, strip_usage_chunk=strip)
    return [out async for out in relay.events()]


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_chunks_split_mid_event_reach_the_client_as_whole_events() -> None:
    upstream = FakeUpstream(split_every(CONTENT + CONTENT + DONE, 7))

    out = await relay_all(upstream, context(), strip=True)

    assert b"".join(out) == CONTENT + CONTENT + DONE
    assert all(piece.endswith(b"\n\n") for piece in out)


async def test_usage_chunk_is_hidden_and_recorded_when_the_client_did_not_ask() -> None:
    ctx = context()

    out = await relay_all(FakeUpstream([CONTENT, USAGE, DONE]), ctx, strip=True)

    assert b"".join(out) == CONTENT + DONE
    assert ctx.usage == Usage(prompt_tokens=4, completion_tokens=2)


async def test_usage_chunk_is_forwarded_when_the_client_asked_for_it() -> None:
    ctx = context()

    out = await relay_all(FakeUpstream([CONTENT + USAGE + DONE]), ctx, strip=False)

    assert b"".join(out) == CONTENT + USAGE + DONE
    assert ctx.usage == Usage(prompt_tokens=4, completion_tokens=2)


async def test_first_chunk_time_and_upstream_time_are_recorded() -> None:
    ctx = context()

    await relay_all(FakeUpstream([CONTENT, DONE]), ctx, strip=True)

    assert ctx.first_chunk_s is not None and ctx.first_chunk_s >= 0
    assert ctx.upstream_s > 0


async def test_failure_after_the_stream_started_ends_with_an_error_event() -> None:
    ctx = context()
    upstream = FakeUpstream([CONTENT], fail_with=UpstreamTimeout("Provider 'p' was too slow."))

    out = await relay_all(upstream, ctx, strip=True)

    assert out[0] == CONTENT
    error = orjson.loads(event_data(out[-1]))
    assert error["error"]["code"] == "upstream_timeout"
    assert ctx.error_code == "upstream_timeout"
    assert upstream.closed >= 1


async def test_incomplete_last_event_is_forwarded_when_the_stream_ends() -> None:
    out = await relay_all(FakeUpstream([CONTENT, b"data: [DONE]"]), context(), strip=True)

    assert out == [CONTENT, b"data: [DONE]"]


async def test_upstream_is_closed_when_the_stream_ends() -> None:
    upstream = FakeUpstream([CONTENT, DONE])

    await relay_all(upstream, context(), strip=True)

    assert upstream.closed == 1
