"""Faults the plain fake upstream cannot script: answers that break HTTP itself.

``FaultyUpstream`` is a :class:`FakeUpstream` whose script may also hold :class:`RawReply`
items: bytes written straight to the socket (a status line and headers of the test's choosing,
a body shorter than its ``Content-Length``, bytes that are not HTTP at all), after which the
connection is closed. ``Reply`` items behave exactly as on the plain fake, in script order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import orjson
from aiohttp import web

from tests.fakes.upstream import FakeUpstream, Reply, Seen


@dataclass
class RawReply:
    data: bytes  # written as is, then the connection is closed
    delay_s: float = 0.0


def truncated_body(declared: int = 4096) -> RawReply:
    """A 200 whose ``Content-Length`` promises more than is sent before the connection closes."""
    body = b'{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"index": 0, '
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    return RawReply(head + body)


def not_http() -> RawReply:
    """Bytes that are not an HTTP response at all (a misconfigured port, say)."""
    return RawReply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


class FaultyUpstream(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self._faults: deque[Reply | RawReply] = deque()

    def enqueue(self, *replies: Reply | RawReply) -> None:
        self._faults.extend(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()  # cached: the plain handler's read below does not wait
        item = self._faults.popleft() if self._faults else Reply()
        if isinstance(item, Reply):
            # The plain script is empty and nothing awaits before the plain handler pops it,
            # so this reply is the one it serves.
            FakeUpstream.enqueue(self, item)
            return await super()._handle(request)
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.requests.append(Seen(request.method, request.path, dict(request.headers), body))
        if item.delay_s:
            await asyncio.sleep(item.delay_s)
        transport = request.transport
        assert transport is not None
        transport.write(item.data)
        transport.close()
        await asyncio.sleep(0.1)
        return web.Response()
