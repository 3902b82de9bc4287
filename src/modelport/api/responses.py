"""Sending answers over ASGI: whole JSON replies and server-sent event streams.

A stream is pumped in one task while another listens for the client going away; whichever
ends first wins, so a client that disconnects cancels the upstream call at once even when
the provider is silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from modelport.core.context import RequestContext
from modelport.inference.relay import StreamRelay

_JSON = b"application/json"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def send_bytes(send: Any, status: int, body: bytes, content_type: str,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send(response_start(status, body, content_type, headers))
    await send({"type": "http.response.body", "body": body})


def response_start(status: int, body: bytes, content_type: str,
                   headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """The ``http.response.start`` message of a whole reply (``send_bytes``' first; sent
    by the inference endpoint itself, a coroutine less on every request)."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", _JSON if content_type == "application/json"
             else content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }


async def send_json(send: Any, payload: Any, status: int = 200) -> None:
    await send_bytes(send, status, orjson.dumps(payload), "application/json")


async def send_stream(relay: StreamRelay, ctx: RequestContext, receive: Any, send: Any,
                      headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    pump = asyncio.ensure_future(_pump(relay, ctx, send, headers))
    listener = asyncio.ensure_future(_wait_for_disconnect(receive))
    done: set[asyncio.Future[None]] = set()
    try:
        done, _ = await asyncio.wait({pump, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, listener):
            task.cancel()
        await asyncio.gather(pump, listener, return_exceptions=True)
        await relay.aclose()
    if pump not in done:
        ctx.client_disconnected = True
        return
    error = pump.exception()
    if error is not None:
        raise error


async def _pump(relay: StreamRelay, ctx: RequestContext, send: Any,
                headers: Sequence[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_SSE_HEADERS, *headers]})
    try:
        async for event in relay.events():
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        ctx.client_disconnected = True


async def _wait_for_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
